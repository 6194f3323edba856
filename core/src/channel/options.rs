//! Channel options, set by grpcio / C-core key names (`grpc.*`) so users can
//! carry their settings over. Unknown keys, wrong-typed values and keys of
//! features not built yet are reported, never silently dropped.

use crate::channel::backoff::BackoffConfig;
use crate::channel::proxy;
use crate::codec::compression::Compression;
use std::time::Duration;

/// C-core's "never" for millisecond options (INT_MAX).
const NEVER_MS: i64 = i32::MAX as i64;

fn millis(key: &str, v: i64, min: i64) -> Result<Duration, OptionError> {
    if v < min {
        return Err(OptionError::InvalidValue {
            key: key.into(),
            reason: format!("{v} ms (at least {min})"),
        });
    }
    Ok(Duration::from_millis(v as u64))
}

/// `None` for INT_MAX ("never"), else the duration.
fn millis_or_never(key: &str, v: i64, min: i64) -> Result<Option<Duration>, OptionError> {
    if v >= NEVER_MS {
        return Ok(None);
    }
    millis(key, v, min).map(Some)
}

/// How a channel connects and keeps its connections: reconnect backoff,
/// keepalive and idle settings (from channel options).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionConfig {
    pub backoff: BackoffConfig,
    /// Ping period (`grpc.keepalive_time_ms`; None = no pings, the default).
    pub keepalive_time: Option<Duration>,
    /// How long a ping may go unanswered (`grpc.keepalive_timeout_ms`, 20 s).
    pub keepalive_timeout: Duration,
    /// Ping even with no active calls (`grpc.keepalive_permit_without_calls`).
    pub keepalive_permit_without_calls: bool,
    /// Pings allowed with no call activity in between
    /// (`grpc.http2.max_pings_without_data`, default 2; 0 = no limit); the
    /// count starts again whenever the client sends headers or data.
    pub max_pings_without_data: u32,
    /// Close the connection after this long without calls
    /// (`grpc.client_idle_timeout_ms`, default 30 min; None = never).
    pub idle_timeout: Option<Duration>,
    /// The largest HTTP/2 frame the server may send
    /// (`grpc.http2.max_frame_size`, 16,384 to 16,777,215; default 16 KiB,
    /// see `connection::MAX_FRAME`).
    pub max_frame_size: u32,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            backoff: BackoffConfig::default(),
            keepalive_time: None,
            keepalive_timeout: Duration::from_secs(20),
            keepalive_permit_without_calls: false,
            max_pings_without_data: 2,
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            max_frame_size: crate::channel::connection::MAX_FRAME,
        }
    }
}

/// A typed option value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionValue {
    /// An integer (C-core's `GRPC_ARG_INTEGER`).
    Int(i64),
    /// A string (C-core's `GRPC_ARG_STRING`).
    Str(String),
}

/// Why an option was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionError {
    /// Not a key rgrpc or gRPC knows.
    UnknownKey(String),
    /// The key takes the other type.
    WrongType { key: String, expected: &'static str },
    /// The value is out of range or malformed.
    InvalidValue { key: String, reason: String },
    /// A gRPC key whose feature rgrpc does not implement yet.
    Unsupported(String),
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionError::UnknownKey(k) => write!(f, "unknown channel option {k:?}"),
            OptionError::WrongType { key, expected } => {
                write!(f, "channel option {key:?} takes {expected} value")
            }
            OptionError::InvalidValue { key, reason } => {
                write!(f, "invalid value for channel option {key:?}: {reason}")
            }
            OptionError::Unsupported(k) => write!(
                f,
                "channel option {k:?} is a gRPC option that this version of rgrpc does not support yet"
            ),
        }
    }
}

/// Default receive limit: 4 MiB, as in grpcio and C-core.
pub const DEFAULT_MAX_RECV: usize = 4 * 1024 * 1024;

/// The settings of a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelOptions {
    /// Code wrapped around every call (not a key: set by the API).
    pub interceptors: crate::call::Interceptors,
    /// Largest message accepted from the server (`None` = unlimited).
    /// Key `grpc.max_receive_message_length`, -1 = unlimited.
    pub max_receive_message_length: Option<usize>,
    /// Largest message the client may send (`None` = unlimited, the default).
    /// Key `grpc.max_send_message_length`, -1 = unlimited.
    pub max_send_message_length: Option<usize>,
    /// Prepended to the user-agent (`grpc.primary_user_agent`).
    pub primary_user_agent: Option<String>,
    /// Appended to the user-agent (`grpc.secondary_user_agent`).
    pub secondary_user_agent: Option<String>,
    /// The `:authority` to send instead of the target's (`grpc.default_authority`).
    pub default_authority: Option<String>,
    /// The name checked in the server's certificate, and the `:authority`
    /// unless `grpc.default_authority` is set (`grpc.ssl_target_name_override`).
    pub ssl_target_name_override: Option<String>,
    /// Compression of messages sent on calls that do not choose their own
    /// (`grpc.default_compression_algorithm`: 0 none, 1 deflate, 2 gzip).
    pub default_compression: Compression,
    /// Soft limit on the metadata of one header block, in bytes as HTTP/2
    /// counts them (name + value + 32 per entry) (`grpc.max_metadata_size`).
    pub max_metadata_size: Option<usize>,
    /// Hard limit (`grpc.absolute_max_metadata_size`).
    pub absolute_max_metadata_size: Option<usize>,
    /// The load-balancing policy (`grpc.lb_policy_name`: `pick_first`, the
    /// default, or `round_robin`); the service config's choice comes first.
    pub lb_policy_name: Option<String>,
    /// The service config JSON (`grpc.service_config`), checked when set
    /// and parsed when the channel is made.
    pub service_config: Option<String>,
    /// Least time between two resolutions of the target
    /// (`grpc.dns_min_time_between_resolutions_ms`, default 30 s).
    pub min_time_between_resolutions: Duration,
    /// Reconnect backoff, keepalive and idle settings.
    pub connection: ConnectionConfig,
    /// The HTTP CONNECT proxy, `http://[user:password@]host[:port]`, used
    /// instead of the environment's (`grpc.http_proxy`; an empty string =
    /// no proxy). See `channel::proxy` for the rules, which are C-core's.
    pub http_proxy: Option<String>,
    /// False turns proxies off, the option's and the environment's
    /// (`grpc.enable_http_proxy` = 0; default true).
    pub enable_http_proxy: bool,
    /// Retries (gRFC A6): transparent retries always, and the service
    /// config's `retryPolicy` / `hedgingPolicy` (`grpc.enable_retries`,
    /// default true).
    pub enable_retries: bool,
    /// Most bytes of sent messages one call keeps to replay on a retry;
    /// past it the call commits to its current attempt
    /// (`grpc.per_rpc_retry_buffer_size`, default 256 KiB, as C-core).
    pub per_rpc_retry_buffer_size: usize,
    /// Most bytes all the channel's calls keep together for retries
    /// (`grpc.retry_buffer_size`, default 64 MiB).
    pub retry_buffer_size: usize,
}

/// `grpc.per_rpc_retry_buffer_size`'s default (C-core's).
pub const DEFAULT_PER_RPC_RETRY_BUFFER: usize = 256 << 10;
/// `grpc.retry_buffer_size`'s default.
pub const DEFAULT_RETRY_BUFFER: usize = 64 << 20;

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            interceptors: Default::default(),
            max_receive_message_length: Some(DEFAULT_MAX_RECV),
            max_send_message_length: None,
            primary_user_agent: None,
            secondary_user_agent: None,
            default_authority: None,
            ssl_target_name_override: None,
            default_compression: Compression::Identity,
            max_metadata_size: None,
            absolute_max_metadata_size: None,
            lb_policy_name: None,
            service_config: None,
            min_time_between_resolutions: crate::channel::control::DEFAULT_MIN_RESOLUTION_INTERVAL,
            connection: ConnectionConfig::default(),
            http_proxy: None,
            enable_http_proxy: true,
            enable_retries: true,
            per_rpc_retry_buffer_size: DEFAULT_PER_RPC_RETRY_BUFFER,
            retry_buffer_size: DEFAULT_RETRY_BUFFER,
        }
    }
}

/// The type of a channel option's value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OptionKind {
    /// An integer (C-core's `GRPC_ARG_INTEGER`).
    Int,
    /// A string (C-core's `GRPC_ARG_STRING`).
    Str,
}

/// A channel option key rgrpc knows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OptionKey {
    /// grpcio's / C-core's name, e.g. `grpc.keepalive_time_ms`.
    pub name: &'static str,
    /// `name` followed by a NUL byte (static: a C string needs no
    /// allocation).
    pub name_with_nul: &'static str,
    pub kind: OptionKind,
    /// False for a gRPC key whose feature rgrpc has not built yet (setting
    /// it is refused as unsupported, not ignored).
    pub supported: bool,
}

/// `key!("grpc.x", Int, true)`: a table entry.
macro_rules! key {
    ($name:literal, $kind:expr, $supported:expr) => {
        OptionKey {
            name: $name,
            name_with_nul: concat!($name, "\0"),
            kind: $kind,
            supported: $supported,
        }
    };
}

/// Every channel option key rgrpc knows, with its type: the one table
/// (`ChannelOptions::set`, the C ABI and the Python binding read it).
pub const KEYS: &[OptionKey] = {
    use OptionKind::{Int, Str};
    &[
        key!("grpc.max_receive_message_length", Int, true),
        key!("grpc.max_send_message_length", Int, true),
        key!("grpc.primary_user_agent", Str, true),
        key!("grpc.secondary_user_agent", Str, true),
        key!("grpc.default_authority", Str, true),
        key!("grpc.ssl_target_name_override", Str, true),
        key!("grpc.keepalive_time_ms", Int, true),
        key!("grpc.keepalive_timeout_ms", Int, true),
        key!("grpc.keepalive_permit_without_calls", Int, true),
        key!("grpc.http2.max_pings_without_data", Int, true),
        key!("grpc.client_idle_timeout_ms", Int, true),
        key!("grpc.max_connection_idle_ms", Int, true),
        key!("grpc.initial_reconnect_backoff_ms", Int, true),
        key!("grpc.min_reconnect_backoff_ms", Int, true),
        key!("grpc.max_reconnect_backoff_ms", Int, true),
        key!("grpc.default_compression_algorithm", Int, true),
        key!("grpc.http2.min_time_between_pings_ms", Int, false),
        key!("grpc.http2.min_ping_interval_without_data_ms", Int, false),
        key!("grpc.service_config", Str, true),
        key!("grpc.service_config_disable_resolution", Int, false),
        key!("grpc.enable_retries", Int, true),
        key!("grpc.per_rpc_retry_buffer_size", Int, true),
        key!("grpc.retry_buffer_size", Int, true),
        key!("grpc.lb_policy_name", Str, true),
        key!("grpc.default_compression_level", Int, false),
        key!("grpc.compression_enabled_algorithms_bitset", Int, false),
        key!("grpc.max_metadata_size", Int, true),
        key!("grpc.absolute_max_metadata_size", Int, true),
        key!("grpc.http2.max_frame_size", Int, true),
        key!("grpc.http2.lookahead_bytes", Int, false),
        key!("grpc.http2.bdp_probe", Int, false),
        key!("grpc.enable_http_proxy", Int, true),
        key!("grpc.http_proxy", Str, true),
        key!("grpc.dns_min_time_between_resolutions_ms", Int, true),
    ]
};

/// The table entry of `name`.
pub fn find_key(name: &str) -> Option<&'static OptionKey> {
    KEYS.iter().find(|k| k.name == name)
}

fn limit(key: &str, v: i64) -> Result<Option<usize>, OptionError> {
    match v {
        -1 => Ok(None),
        v if v < -1 => Err(OptionError::InvalidValue {
            key: key.into(),
            reason: format!("{v} (use -1 for unlimited or a size in bytes)"),
        }),
        v => usize::try_from(v)
            .map(Some)
            .map_err(|_| OptionError::InvalidValue {
                key: key.into(),
                reason: format!("{v} is too large"),
            }),
    }
}

/// A size in bytes: at least 1, at most `i32::MAX`.
fn size(key: &str, v: i64) -> Result<usize, OptionError> {
    if !(1..=i32::MAX as i64).contains(&v) {
        return Err(OptionError::InvalidValue {
            key: key.into(),
            reason: format!("{v} (a size in bytes, at least 1)"),
        });
    }
    Ok(v as usize)
}

/// A byte count from 0 (none) to `i32::MAX`.
fn bytes(key: &str, v: i64) -> Result<usize, OptionError> {
    if !(0..=i32::MAX as i64).contains(&v) {
        return Err(OptionError::InvalidValue {
            key: key.into(),
            reason: format!("{v} (a size in bytes, 0 or more)"),
        });
    }
    Ok(v as usize)
}

/// C-core's defaults of the metadata limits.
pub const DEFAULT_MAX_METADATA_SIZE: usize = 8 << 10;
pub const DEFAULT_ABSOLUTE_MAX_METADATA_SIZE: usize = 16 << 10;

/// The metadata limits of a channel, as C-core derives them: a header
/// block over `hard` is refused; one between `soft` and `hard` is refused
/// with a probability growing from 0 at `soft` to 1 at `hard` (received
/// metadata only).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MetadataLimits {
    pub soft: usize,
    pub hard: usize,
}

impl ChannelOptions {
    /// The metadata limits: both options as given (soft at most hard), or
    /// the missing one derived from the other as C-core does (hard = soft
    /// × 1.25, soft = hard × 0.8), or C-core's defaults (8 KiB, 16 KiB).
    pub fn metadata_limits(&self) -> MetadataLimits {
        match (self.max_metadata_size, self.absolute_max_metadata_size) {
            (None, None) => MetadataLimits {
                soft: DEFAULT_MAX_METADATA_SIZE,
                hard: DEFAULT_ABSOLUTE_MAX_METADATA_SIZE,
            },
            (Some(s), None) => MetadataLimits {
                soft: s,
                hard: s.saturating_add(s / 4),
            },
            (None, Some(h)) => MetadataLimits {
                soft: h - h / 5,
                hard: h,
            },
            (Some(s), Some(h)) => MetadataLimits {
                soft: s.min(h),
                hard: h,
            },
        }
    }

    /// Sets an option by its gRPC key. [`KEYS`] says whether the key is
    /// known, supported and of which type; the match below applies values.
    pub fn set(&mut self, key: &str, value: OptionValue) -> Result<(), OptionError> {
        let spec = find_key(key).ok_or_else(|| OptionError::UnknownKey(key.to_string()))?;
        if !spec.supported {
            return Err(OptionError::Unsupported(key.to_string()));
        }
        match (spec.kind, &value) {
            (OptionKind::Int, OptionValue::Str(_)) => {
                return Err(OptionError::WrongType {
                    key: key.to_string(),
                    expected: "an integer",
                })
            }
            (OptionKind::Str, OptionValue::Int(_)) => {
                return Err(OptionError::WrongType {
                    key: key.to_string(),
                    expected: "a string",
                })
            }
            _ => {}
        }
        // The type is checked: these only unwrap.
        let int = |v: OptionValue| match v {
            OptionValue::Int(i) => Ok::<i64, OptionError>(i),
            OptionValue::Str(_) => unreachable!("checked against KEYS"),
        };
        let string = |v: OptionValue| match v {
            OptionValue::Str(s) => Ok::<String, OptionError>(s),
            OptionValue::Int(_) => unreachable!("checked against KEYS"),
        };
        let lc = &mut self.connection;
        match key {
            "grpc.max_receive_message_length" => {
                self.max_receive_message_length = limit(key, int(value)?)?
            }
            "grpc.max_send_message_length" => {
                self.max_send_message_length = limit(key, int(value)?)?
            }
            "grpc.primary_user_agent" => {
                let s = string(value)?;
                check_header_text(key, &s)?;
                self.primary_user_agent = Some(s)
            }
            "grpc.secondary_user_agent" => {
                let s = string(value)?;
                check_header_text(key, &s)?;
                self.secondary_user_agent = Some(s)
            }
            "grpc.default_authority" => {
                let s = string(value)?;
                if s.is_empty() || s.parse::<http::uri::Authority>().is_err() {
                    return Err(OptionError::InvalidValue {
                        key: key.into(),
                        reason: format!("{s:?} is not a valid authority (host[:port])"),
                    });
                }
                self.default_authority = Some(s)
            }
            "grpc.ssl_target_name_override" => {
                let s = string(value)?;
                if s.is_empty()
                    || s.parse::<http::uri::Authority>().is_err()
                    || s.contains(':') && !s.starts_with('[')
                {
                    return Err(OptionError::InvalidValue {
                        key: key.into(),
                        reason: format!("{s:?} is not a valid host name"),
                    });
                }
                self.ssl_target_name_override = Some(s)
            }
            "grpc.keepalive_time_ms" => lc.keepalive_time = millis_or_never(key, int(value)?, 1)?,
            "grpc.keepalive_timeout_ms" => lc.keepalive_timeout = millis(key, int(value)?, 1)?,
            "grpc.keepalive_permit_without_calls" => {
                lc.keepalive_permit_without_calls = int(value)? != 0
            }
            "grpc.http2.max_pings_without_data" => {
                let v = int(value)?;
                lc.max_pings_without_data =
                    u32::try_from(v).map_err(|_| OptionError::InvalidValue {
                        key: key.into(),
                        reason: format!("{v} (use 0 for no limit, or a count)"),
                    })?
            }
            "grpc.client_idle_timeout_ms" | "grpc.max_connection_idle_ms" => {
                lc.idle_timeout = millis_or_never(key, int(value)?, 1)?
            }
            "grpc.initial_reconnect_backoff_ms" => {
                lc.backoff.initial = millis(key, int(value)?, 1)?
            }
            "grpc.min_reconnect_backoff_ms" => {
                lc.backoff.min_connect_timeout = millis(key, int(value)?, 1)?
            }
            "grpc.max_reconnect_backoff_ms" => lc.backoff.max = millis(key, int(value)?, 1)?,
            "grpc.default_compression_algorithm" => {
                let v = int(value)?;
                self.default_compression = u32::try_from(v)
                    .ok()
                    .and_then(Compression::from_u32)
                    .ok_or_else(|| OptionError::InvalidValue {
                        key: key.into(),
                        reason: format!("{v} (use 0 for none, 1 for deflate, 2 for gzip)"),
                    })?
            }
            "grpc.max_metadata_size" => self.max_metadata_size = Some(size(key, int(value)?)?),
            "grpc.http2.max_frame_size" => {
                // The range HTTP/2 allows (RFC 9113, SETTINGS_MAX_FRAME_SIZE).
                let v = int(value)?;
                lc.max_frame_size = u32::try_from(v)
                    .ok()
                    .filter(|v| (1 << 14..1 << 24).contains(v))
                    .ok_or_else(|| OptionError::InvalidValue {
                        key: key.into(),
                        reason: format!("{v} (HTTP/2 allows 16384 to 16777215)"),
                    })?
            }
            "grpc.lb_policy_name" => {
                let s = string(value)?;
                if !crate::channel::policy::POLICIES.contains(&s.as_str()) {
                    return Err(OptionError::InvalidValue {
                        key: key.into(),
                        reason: format!(
                            "{s:?} is not a load-balancing policy rgrpc has (it has: {})",
                            crate::channel::policy::POLICIES.join(", ")
                        ),
                    });
                }
                self.lb_policy_name = Some(s)
            }
            "grpc.service_config" => {
                let s = string(value)?;
                crate::channel::service_config::ServiceConfig::parse(
                    &s,
                    crate::channel::policy::POLICIES,
                )
                .map_err(|reason| OptionError::InvalidValue {
                    key: key.into(),
                    reason,
                })?;
                self.service_config = Some(s)
            }
            "grpc.dns_min_time_between_resolutions_ms" => {
                self.min_time_between_resolutions = millis(key, int(value)?, 0)?
            }
            "grpc.absolute_max_metadata_size" => {
                self.absolute_max_metadata_size = Some(size(key, int(value)?)?)
            }
            "grpc.http_proxy" => {
                let s = string(value)?;
                if !s.is_empty() {
                    proxy::parse_url(&s).map_err(|reason| OptionError::InvalidValue {
                        key: key.into(),
                        reason,
                    })?;
                }
                self.http_proxy = Some(s)
            }
            "grpc.enable_http_proxy" => self.enable_http_proxy = int(value)? != 0,
            "grpc.enable_retries" => self.enable_retries = int(value)? != 0,
            "grpc.per_rpc_retry_buffer_size" => {
                self.per_rpc_retry_buffer_size = bytes(key, int(value)?)?
            }
            "grpc.retry_buffer_size" => self.retry_buffer_size = bytes(key, int(value)?)?,
            k => unreachable!("{k} is in KEYS as supported but not applied here"),
        }
        Ok(())
    }
}

fn check_header_text(key: &str, s: &str) -> Result<(), OptionError> {
    if s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        Ok(())
    } else {
        Err(OptionError::InvalidValue {
            key: key.into(),
            reason: "must be printable ASCII".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every supported key of the table is applied by `set` (a value of its
    /// type is taken or refused as invalid, never unknown, and nothing
    /// panics); every unsupported one is refused as such; no key is listed
    /// twice.
    #[test]
    fn metadata_limits_as_c_core_derives_them() {
        let mut o = ChannelOptions::default();
        assert_eq!(
            o.metadata_limits(),
            MetadataLimits {
                soft: 8192,
                hard: 16384
            }
        );
        o.set("grpc.max_metadata_size", OptionValue::Int(1000))
            .unwrap();
        assert_eq!(
            o.metadata_limits(),
            MetadataLimits {
                soft: 1000,
                hard: 1250
            }
        );
        o.set("grpc.absolute_max_metadata_size", OptionValue::Int(800))
            .unwrap();
        assert_eq!(
            o.metadata_limits(),
            MetadataLimits {
                soft: 800,
                hard: 800
            }
        );
        let mut o = ChannelOptions::default();
        o.set("grpc.absolute_max_metadata_size", OptionValue::Int(1000))
            .unwrap();
        assert_eq!(
            o.metadata_limits(),
            MetadataLimits {
                soft: 800,
                hard: 1000
            }
        );
        assert!(o
            .set("grpc.max_metadata_size", OptionValue::Int(0))
            .is_err());
    }

    #[test]
    fn the_key_table_and_set_agree() {
        for (i, k) in KEYS.iter().enumerate() {
            assert!(
                KEYS[..i].iter().all(|o| o.name != k.name),
                "{} twice",
                k.name
            );
            let (right, wrong) = match k.kind {
                OptionKind::Int => (OptionValue::Int(1000), OptionValue::Str("x".into())),
                OptionKind::Str => (OptionValue::Str("foo.test".into()), OptionValue::Int(1)),
            };
            let mut o = ChannelOptions::default();
            let r = o.set(k.name, right);
            if k.supported {
                assert!(
                    matches!(r, Ok(()) | Err(OptionError::InvalidValue { .. })),
                    "{}: {r:?}",
                    k.name
                );
                assert!(
                    matches!(o.set(k.name, wrong), Err(OptionError::WrongType { .. })),
                    "{}",
                    k.name
                );
            } else {
                assert_eq!(r, Err(OptionError::Unsupported(k.name.into())));
            }
        }
        assert!(matches!(
            ChannelOptions::default().set("grpc.nope", OptionValue::Int(1)),
            Err(OptionError::UnknownKey(_))
        ));
    }

    #[test]
    fn set_and_errors() {
        let mut o = ChannelOptions::default();
        assert_eq!(o.max_receive_message_length, Some(4 << 20));
        o.set("grpc.max_receive_message_length", OptionValue::Int(-1))
            .unwrap();
        assert_eq!(o.max_receive_message_length, None);
        o.set("grpc.max_send_message_length", OptionValue::Int(10))
            .unwrap();
        assert_eq!(o.max_send_message_length, Some(10));
        assert!(matches!(
            o.set("grpc.max_send_message_length", OptionValue::Str("x".into())),
            Err(OptionError::WrongType { .. })
        ));
        assert!(matches!(
            o.set("grpc.max_send_message_length", OptionValue::Int(-5)),
            Err(OptionError::InvalidValue { .. })
        ));
        assert!(matches!(
            o.set("grpc.nope", OptionValue::Int(1)),
            Err(OptionError::UnknownKey(_))
        ));
        o.set("grpc.enable_retries", OptionValue::Int(0)).unwrap();
        assert!(!o.enable_retries);
        o.set("grpc.per_rpc_retry_buffer_size", OptionValue::Int(0))
            .unwrap();
        assert_eq!(o.per_rpc_retry_buffer_size, 0);
        assert!(matches!(
            o.set("grpc.retry_buffer_size", OptionValue::Int(-1)),
            Err(OptionError::InvalidValue { .. })
        ));
        // The service config is checked when set, naming the JSON path.
        o.set("grpc.service_config", OptionValue::Str("{}".into()))
            .unwrap();
        match o.set(
            "grpc.service_config",
            OptionValue::Str(r#"{"methodConfig":[{"timeout":"soon"}]}"#.into()),
        ) {
            Err(OptionError::InvalidValue { reason, .. }) => {
                assert!(reason.contains("$.methodConfig[0].timeout"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(o.service_config.as_deref(), Some("{}"));
        o.set(
            "grpc.lb_policy_name",
            OptionValue::Str("round_robin".into()),
        )
        .unwrap();
        assert_eq!(o.lb_policy_name.as_deref(), Some("round_robin"));
        match o.set("grpc.lb_policy_name", OptionValue::Str("grpclb".into())) {
            Err(OptionError::InvalidValue { reason, .. }) => {
                assert!(reason.contains("pick_first, round_robin"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        o.set("grpc.keepalive_time_ms", OptionValue::Int(1000))
            .unwrap();
        assert_eq!(o.connection.keepalive_time, Some(Duration::from_secs(1)));
        o.set("grpc.keepalive_time_ms", OptionValue::Int(i32::MAX as i64))
            .unwrap();
        assert_eq!(o.connection.keepalive_time, None);
        o.set("grpc.client_idle_timeout_ms", OptionValue::Int(1000))
            .unwrap();
        assert_eq!(o.connection.idle_timeout, Some(Duration::from_secs(1)));
        assert!(o
            .set("grpc.initial_reconnect_backoff_ms", OptionValue::Int(0))
            .is_err());
        assert!(o
            .set(
                "grpc.default_authority",
                OptionValue::Str("bad authority".into())
            )
            .is_err());
        o.set(
            "grpc.default_authority",
            OptionValue::Str("foo.test:443".into()),
        )
        .unwrap();
        o.set(
            "grpc.primary_user_agent",
            OptionValue::Str("myapp/1.0".into()),
        )
        .unwrap();
    }
}
