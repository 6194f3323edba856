//! Channels, channel options and channel credentials.

use super::boundary::boundary;
use super::credentials::rgrpc_channel_credentials;
use super::error::{cstring, rgrpc_error, rgrpc_result, set_error, LastError};
use super::handle::{
    free_boxed, str_checked, str_or_error, to_boxed, try_mut_or_null, try_ref, try_ref_or_null,
    write_out, Castable,
};
use super::names::lend_nul_terminated;
use rgrpc_core::channel::{ChannelError, OptionError, OptionValue};
use rgrpc_core::codec::compression::Compression;
use rgrpc_core::credentials::ChannelCredentials;
use rgrpc_core::{Channel, ChannelOptions};
use std::ffi::{c_char, CString};

/// A builder of channel settings, keyed by the gRPC channel-argument names
/// grpcio and C-core use, so settings carry over:
///
/// | key | type | meaning |
/// |---|---|---|
/// | `grpc.max_receive_message_length` | int | largest message accepted (default 4 MiB; -1 = unlimited) |
/// | `grpc.max_send_message_length` | int | largest message sent (default -1 = unlimited) |
/// | `grpc.primary_user_agent` | string | prepended to the user-agent |
/// | `grpc.secondary_user_agent` | string | appended to the user-agent |
/// | `grpc.default_authority` | string | `:authority` sent instead of the target's |
/// | `grpc.default_compression_algorithm` | int | compression of sent messages: 0 none, 1 deflate, 2 gzip (default 0) |
/// | `grpc.ssl_target_name_override` | string | name checked in the server certificate (and default `:authority`) |
/// | `grpc.initial_reconnect_backoff_ms` | int | first reconnect backoff (default 1000) |
/// | `grpc.min_reconnect_backoff_ms` | int | least time given to a connection attempt (default 20000) |
/// | `grpc.max_reconnect_backoff_ms` | int | largest reconnect backoff (default 120000) |
/// | `grpc.keepalive_time_ms` | int | ping period; INT_MAX (default) = no pings |
/// | `grpc.keepalive_timeout_ms` | int | ping answer deadline; the connection closes after it (default 20000) |
/// | `grpc.keepalive_permit_without_calls` | int | 1 = ping even with no active calls (default 0) |
/// | `grpc.http2.max_pings_without_data` | int | keepalive pings allowed while the client sends nothing (the count starts again whenever it sends headers or data, as in C-core; default 2; 0 = no limit) |
/// | `grpc.max_metadata_size` | int | soft limit on one received header block, bytes as HTTP/2 counts them (default 8192; between it and the hard limit a block is refused with a probability growing to 1, as in C-core) |
/// | `grpc.absolute_max_metadata_size` | int | hard limit on one header block, received or sent (default 16384; a call over it ends `RESOURCE_EXHAUSTED` naming the limit; set alone, the soft limit is 80% of it) |
/// | `grpc.client_idle_timeout_ms` | int | close the connection (IDLE) after this long without calls (default 1800000; INT_MAX = never); `grpc.max_connection_idle_ms` is accepted as the same |
/// | `grpc.http_proxy` | string | HTTP CONNECT proxy `http://[user:password@]host[:port]` (port default 443, as in C-core), used instead of the environment's `grpc_proxy`, `https_proxy`, `http_proxy` (read in that order); `no_grpc_proxy`, else `no_proxy`, lists hosts, domain suffixes and CIDR blocks that bypass it; "" = no proxy |
/// | `grpc.enable_http_proxy` | int | 0 = use no proxy, neither the option's nor the environment's (default 1) |
/// | `grpc.lb_policy_name` | string | load-balancing policy: `pick_first` (default: one connection, to the first address that accepts; the next address is tried 250 ms into an attempt that has not answered) or `round_robin` (a connection to every address, calls in turn over the READY ones); the service config's `loadBalancingConfig` wins over it |
/// | `grpc.service_config` | string | service config JSON (gRPC's `service_config.md`): `loadBalancingConfig` (the first of `pick_first` (with `shuffleAddressList`) / `round_robin` listed; a list of none is refused), `methodConfig` matched by service+method, then service, then `{}`: `timeout` (the smaller of it and the call's deadline), `waitForReady` (unless the call sets it), `maxRequestMessageBytes` / `maxResponseMessageBytes` (the smaller of it and the channel's limit); `retryPolicy` / `hedgingPolicy` (gRFC A6: retries with backoff and `grpc-retry-pushback-ms`; hedged attempts, the first with response headers wins), and `retryThrottling`. Checked when set: a bad config is `RGRPC_RESULT_INVALID_OPTION_VALUE` with the JSON path of the problem (`$.methodConfig[0].timeout: ...`) |
/// | `grpc.dns_min_time_between_resolutions_ms` | int | least time between two resolutions of the target (default 30000); the channel resolves again when a connection fails or is closed by the server |
/// | `grpc.enable_retries` | int | 1 (default): transparent retries (a request that never reached the server's application: refused or GOAWAY-cut streams, a connection that failed before the request left) and the service config's retry and hedging policies; 0: none |
/// | `grpc.per_rpc_retry_buffer_size` | int | bytes of request messages a call keeps to replay (default 262144); past it the call commits to its current attempt |
/// | `grpc.retry_buffer_size` | int | the same for all the channel's calls together (default 67108864) |
/// | `grpc.http2.max_frame_size` | int | largest HTTP/2 frame the server may send, 16384 (default, HTTP/2's own) to 16777215. Larger frames (say 262144) let large messages be read from the socket straight into the HTTP/2 buffer: a 1 MiB unary call then costs about 8 % less CPU, but messages of a size near the frame size can cost more (the allocator returns and refaults each frame's buffer; see bench/README.md) |
///
/// Other gRPC keys (`grpc.http2.bdp_probe`, ...) are reported
/// as `RGRPC_RESULT_UNSUPPORTED` until their feature lands; unknown keys as
/// `RGRPC_RESULT_UNKNOWN_OPTION`; a value of the wrong type or range as
/// `RGRPC_RESULT_INVALID_OPTION_VALUE`. The message of the last failure is
/// `rgrpc_channel_options_last_error`. `rgrpc_channel_options_known_key`
/// lists every key this library knows, with its type and whether it is
/// supported (for bindings that pass options through).
///
/// Box-owned, mutable: use from one thread at a time. `rgrpc_channel_new`
/// copies it, so it may be reused or freed afterwards.
///
/// Methods: `rgrpc_channel_options_new`, `rgrpc_channel_options_set_int`,
/// `rgrpc_channel_options_set_string`,
/// `rgrpc_channel_options_set_default_compression`,
/// `rgrpc_channel_options_last_error`,
/// `rgrpc_channel_options_known_key`, `rgrpc_channel_options_add_interceptor`,
/// `rgrpc_channel_options_free`.
pub struct rgrpc_channel_options {
    _private: [u8; 0],
}

pub(crate) struct OptionsBuilder {
    pub(crate) opts: ChannelOptions,
    last_error: CString,
}

impl Castable for rgrpc_channel_options {
    type Rust = OptionsBuilder;
}

/// Creates an empty options builder (every option at its default).
/// Owned by the caller: free with `rgrpc_channel_options_free`.
/// Never returns NULL except on allocation failure.
#[no_mangle]
pub extern "C" fn rgrpc_channel_options_new() -> *mut rgrpc_channel_options {
    boundary(|| {
        to_boxed::<rgrpc_channel_options>(OptionsBuilder {
            opts: ChannelOptions::default(),
            last_error: CString::default(),
        })
    })
}

fn apply(b: &mut OptionsBuilder, key: &str, v: OptionValue) -> rgrpc_result {
    match b.opts.set(key, v) {
        Ok(()) => rgrpc_result::Ok,
        Err(e) => {
            b.last_error = cstring(&e.to_string());
            match e {
                OptionError::UnknownKey(_) => rgrpc_result::UnknownOption,
                OptionError::WrongType { .. } | OptionError::InvalidValue { .. } => {
                    rgrpc_result::InvalidOptionValue
                }
                OptionError::Unsupported(_) => rgrpc_result::Unsupported,
            }
        }
    }
}

/// Sets an integer option (see the table on `rgrpc_channel_options`).
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER`,
/// `RGRPC_RESULT_INVALID_UTF8`, `RGRPC_RESULT_UNKNOWN_OPTION`,
/// `RGRPC_RESULT_INVALID_OPTION_VALUE` or `RGRPC_RESULT_UNSUPPORTED`; the
/// reason is then in `rgrpc_channel_options_last_error(opts)`.
/// `key` is borrowed for the call only.
#[no_mangle]
pub extern "C" fn rgrpc_channel_options_set_int(
    opts: *mut rgrpc_channel_options,
    key: *const c_char,
    value: i64,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_channel_options, opts);
        let key = match str_or_error(&mut b.last_error, key, "key") {
            Ok(k) => k,
            Err(r) => return r,
        };
        apply(b, key, OptionValue::Int(value))
    })
}

/// The type of a channel option's value: which setter takes it.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum rgrpc_option_type {
    /// `rgrpc_channel_options_set_int`.
    Int = 0,
    /// `rgrpc_channel_options_set_string`.
    String = 1,
}

/// The `index`-th (from 0) channel option key this library knows, from the
/// core's one table of them: writes its name (a static string, never
/// freed) to `*name_out`, its type to `*type_out` and whether setting it
/// is supported (false: a gRPC key whose feature is not built yet, refused
/// with `RGRPC_RESULT_UNSUPPORTED`) to `*supported_out`. Each out-parameter
/// may be NULL. For bindings that pass grpcio-style options through and
/// want to check their own lists.
///
/// Returns `RGRPC_RESULT_OK`, or `RGRPC_RESULT_NOT_FOUND` when `index` is
/// past the last key (nothing written). Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_options_known_key(
    index: usize,
    name_out: *mut *const c_char,
    type_out: *mut rgrpc_option_type,
    supported_out: *mut bool,
) -> rgrpc_result {
    use rgrpc_core::channel::options::{OptionKind, KEYS};
    boundary(|| {
        let Some(k) = KEYS.get(index) else {
            return rgrpc_result::NotFound;
        };
        if !name_out.is_null() {
            write_out!(name_out, lend_nul_terminated(k.name_with_nul));
        }
        if !type_out.is_null() {
            write_out!(
                type_out,
                match k.kind {
                    OptionKind::Int => rgrpc_option_type::Int,
                    OptionKind::Str => rgrpc_option_type::String,
                }
            );
        }
        if !supported_out.is_null() {
            write_out!(supported_out, k.supported);
        }
        rgrpc_result::Ok
    })
}

/// Sets a string option (see the table on `rgrpc_channel_options`).
/// Returns as `rgrpc_channel_options_set_int`. `key` and `value` are
/// copied; NULL `value` is `RGRPC_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub extern "C" fn rgrpc_channel_options_set_string(
    opts: *mut rgrpc_channel_options,
    key: *const c_char,
    value: *const c_char,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_channel_options, opts);
        let key = match str_or_error(&mut b.last_error, key, "key") {
            Ok(k) => k,
            Err(r) => return r,
        };
        let value = match str_or_error(&mut b.last_error, value, "value") {
            Ok(v) => v,
            Err(r) => return r,
        };
        apply(b, key, OptionValue::Str(value.to_string()))
    })
}

/// Sets the channel's default compression for sent messages, the typed
/// form of `grpc.default_compression_algorithm` (grpcio's `compression=`
/// argument of `insecure_channel`): `RGRPC_COMPRESSION_NONE` (default),
/// `RGRPC_COMPRESSION_DEFLATE` or `RGRPC_COMPRESSION_GZIP`. A call may
/// override it with `rgrpc_call_options_set_compression`.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER` or
/// `RGRPC_RESULT_INVALID_OPTION_VALUE` (the reason in
/// `rgrpc_channel_options_last_error`).
#[no_mangle]
pub extern "C" fn rgrpc_channel_options_set_default_compression(
    opts: *mut rgrpc_channel_options,
    compression: u32,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_channel_options, opts);
        match Compression::from_u32(compression) {
            Some(c) => {
                b.opts.default_compression = c;
                rgrpc_result::Ok
            }
            None => {
                b.last_error = cstring(&format!(
                    "{compression} is not an rgrpc_compression value (0 none, 1 deflate, 2 gzip)"
                ));
                rgrpc_result::InvalidOptionValue
            }
        }
    })
}

/// The message of the most recent failed setter on `opts` (`""` if none,
/// or for NULL). Borrowed: valid until the next setter call or
/// `rgrpc_channel_options_free`.
#[no_mangle]
pub extern "C" fn rgrpc_channel_options_last_error(
    opts: *const rgrpc_channel_options,
) -> *const c_char {
    boundary(|| {
        // SAFETY: opts is NULL or a live rgrpc_channel_options.
        match unsafe { try_ref::<rgrpc_channel_options>(opts) } {
            Some(b) => b.last_error.as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

/// Frees an options builder. NULL is a no-op.
#[no_mangle]
pub extern "C" fn rgrpc_channel_options_free(opts: *mut rgrpc_channel_options) {
    boundary(|| {
        // SAFETY: opts is NULL or a live builder owned by the caller.
        unsafe { free_boxed::<rgrpc_channel_options>(opts) }
    })
}

/// A channel: a target, settings, and one HTTP/2 connection, made lazily
/// on the first call and shared by every call on the channel.
///
/// Thread-safe: any function on a channel may be called from any thread
/// concurrently. Box-owned handle to a shared (`Arc`) channel: calls keep
/// the channel alive, so freeing the handle while calls are active is
/// allowed and does not end them.
///
/// Errors: a function on the channel that fails (including
/// `rgrpc_call_start`, `rgrpc_call_unary`, `rgrpc_call_unary_buffer` and
/// `rgrpc_call_unary_async`, which work on it) leaves a message saying why,
/// read with `rgrpc_channel_last_error(channel)` from the same thread.
/// `rgrpc_channel_new` reports through its `rgrpc_error` out-parameter.
///
/// Recipe:
/// 1. `rgrpc_channel_new(target, NULL, NULL, &ch, &err)` — no I/O yet.
/// 2. Make calls: `rgrpc_call_unary` for the simple case, or
///    `rgrpc_call_start` + send/recv/finish for streaming (see `rgrpc_call`).
/// 3. `rgrpc_channel_close(ch)` (optional: ends active calls with
///    CANCELLED, refuses new ones), then `rgrpc_channel_free(ch)`.
///
/// Backends: the target is resolved (host names by DNS, on a library
/// thread, every address of the answer; again when a connection fails or
/// the server closes one, at most every
/// `grpc.dns_min_time_between_resolutions_ms`) to a list of addresses, and
/// a load-balancing policy chooses among them: `pick_first` (the default)
/// uses one connection, to the first address that accepts (gRFC A61/A62:
/// the next address is tried when one fails or 250 ms into an attempt that
/// has not answered; after all failed, each retries on its own backoff);
/// `round_robin` keeps a connection to every address and sends calls to the
/// READY ones in turn. `rgrpc_call_peer` says where a call went.
///
/// Connectivity (`doc/connectivity-semantics-and-api.md` in grpc/grpc): IDLE until the
/// first call or `rgrpc_channel_get_state(ch, true)`; CONNECTING; READY
/// (round_robin: when any address is READY); TRANSIENT_FAILURE after every
/// address failed, after a broken connection (pick_first), or when the name
/// does not resolve (the message names the target); fail-fast calls then
/// end UNAVAILABLE, wait-for-ready calls wait. Each address reconnects
/// after its own jittered exponential backoff (1 s, ×1.6, ±20 %, at most
/// 120 s; each attempt given at least 20 s; C-core's
/// `grpc.*_reconnect_backoff_ms` options); back to IDLE after
/// `grpc.client_idle_timeout_ms` (30 min) without calls; SHUTDOWN after
/// close. Keepalive pings (`grpc.keepalive_time_ms`, off by default) close
/// a connection whose server stops answering. Calls beyond a server's
/// MAX_CONCURRENT_STREAMS wait for a free stream on its connection.
///
/// Methods: `rgrpc_channel_new`, `rgrpc_channel_close`, `rgrpc_channel_free`,
/// `rgrpc_channel_get_state`, `rgrpc_channel_subscribe`,
/// `rgrpc_channel_unsubscribe`, `rgrpc_channel_wait_for_ready`,
/// `rgrpc_channel_wait_for_state_change`, `rgrpc_channel_ready_future`,
/// `rgrpc_channel_reset_connect_backoff`, `rgrpc_channel_authority`,
/// `rgrpc_channel_snapshot`, `rgrpc_channel_last_error`; with a
/// completion queue: `rgrpc_channel_watch_state_cq`,
/// `rgrpc_channel_ready_future_cq`.
pub struct rgrpc_channel {
    _private: [u8; 0],
}

/// What an `rgrpc_channel` handle points to.
pub(crate) struct ChannelHandle {
    pub(crate) channel: Channel,
    /// Messages of failed functions on the channel, per thread.
    pub(crate) last_error: LastError,
}

impl Castable for rgrpc_channel {
    type Rust = ChannelHandle;
}

impl ChannelHandle {
    /// A method name argument of a call started on this channel; a NULL or
    /// non-UTF-8 one is recorded as the channel's last error.
    pub(crate) fn method_arg<'a>(&self, method: *const c_char) -> Result<&'a str, rgrpc_result> {
        crate::handle::str_checked(method, "method")
            .map_err(|(r, text)| self.last_error.fail(r, text))
    }
}

/// Creates a channel to `target`. No connection is made until the first
/// call.
///
/// `target`: `host:port`, `dns:///host:port`, `dns://dnsserver:port/host:port`
/// (ask that DNS server, an IP address; port 53 by default),
/// `ipv4:addr:port[,addr:port...]`, `ipv6:[addr]:port[,...]`, `unix:/path`,
/// `unix:///abs/path` or `unix-abstract:name`. Without a port, 443. The
/// load-balancing policy chooses among several addresses (see
/// `rgrpc_channel`).
/// `creds`: NULL (insecure) or channel credentials (borrowed; the channel
/// keeps its own reference, so they may be freed right after). `opts`: NULL for defaults (copied; may be freed after).
///
/// On success writes a new channel to `*channel_out` (owned by the caller:
/// `rgrpc_channel_free`). On failure `*channel_out` is untouched and, when
/// `error_out` is not NULL, `*error_out` receives an error object saying
/// why (owned by the caller: `rgrpc_error_free`).
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER` (target or
/// channel_out NULL), `RGRPC_RESULT_INVALID_UTF8`,
/// `RGRPC_RESULT_INVALID_TARGET`, `RGRPC_RESULT_INVALID_ARGUMENT` (local
/// credentials with a non-local target, a malformed proxy URL in
/// `grpc_proxy`, `https_proxy` or `http_proxy`, or an invalid
/// `grpc.service_config`), `RGRPC_RESULT_SHUTDOWN` (after
/// `rgrpc_shutdown`). Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_new(
    target: *const c_char,
    creds: *const rgrpc_channel_credentials,
    opts: *const rgrpc_channel_options,
    channel_out: *mut *mut rgrpc_channel,
    error_out: *mut *mut rgrpc_error,
) -> rgrpc_result {
    boundary(|| {
        if channel_out.is_null() {
            return set_error(
                error_out,
                rgrpc_result::NullParameter,
                "channel_out is NULL",
            );
        }
        if crate::runtime::shut_down() {
            return set_error(
                error_out,
                rgrpc_result::Shutdown,
                rgrpc_core::rt::SHUT_DOWN_MESSAGE,
            );
        }
        let target = match str_checked(target, "target") {
            Ok(t) => t,
            Err((r, text)) => return set_error(error_out, r, &text),
        };
        // SAFETY: creds is NULL or a live credentials handle.
        let creds = unsafe { try_ref::<rgrpc_channel_credentials>(creds) }
            .cloned()
            .unwrap_or_else(ChannelCredentials::insecure);
        // SAFETY: opts is NULL or a live options builder.
        let options = unsafe { try_ref::<rgrpc_channel_options>(opts) }
            .map(|b| b.opts.clone())
            .unwrap_or_default();
        let made = Channel::with_credentials(target, creds, options);
        api_trace(|| match &made {
            Ok(_) => format!("rgrpc_channel_new({target:?})"),
            Err(e) => format!("rgrpc_channel_new({target:?}): {e}"),
        });
        match made {
            Ok(ch) => {
                let h = ChannelHandle {
                    channel: ch,
                    last_error: LastError::default(),
                };
                write_out!(channel_out, to_boxed::<rgrpc_channel>(h));
                rgrpc_result::Ok
            }
            Err(e @ ChannelError::InvalidTarget(_)) => {
                set_error(error_out, rgrpc_result::InvalidTarget, &e.to_string())
            }
            Err(e @ ChannelError::InvalidServiceConfig(_)) => {
                set_error(error_out, rgrpc_result::InvalidArgument, &e.to_string())
            }
            Err(e @ (ChannelError::InvalidCredentials(_) | ChannelError::InvalidProxy(_))) => {
                set_error(error_out, rgrpc_result::InvalidArgument, &e.to_string())
            }
        }
    })
}

/// Closes the channel: every active call ends with CANCELLED, new calls
/// are refused with `RGRPC_RESULT_CHANNEL_CLOSED`, the connection is
/// closed. Idempotent; the handle must still be freed. Returns
/// `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_close(channel: *mut rgrpc_channel) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        api_trace(|| format!("rgrpc_channel_close({})", ch.channel.authority()));
        ch.channel.close();
        rgrpc_result::Ok
    })
}

/// Frees the channel handle. NULL is a no-op. Calls still in progress keep
/// working (they hold the channel); use `rgrpc_channel_close` first to end
/// them. No other thread may use this handle during or after the call;
/// `rgrpc_channel_last_error` strings become invalid.
#[no_mangle]
pub extern "C" fn rgrpc_channel_free(channel: *mut rgrpc_channel) {
    boundary(|| {
        if !channel.is_null() {
            api_trace(|| "rgrpc_channel_free".to_string());
        }
        // SAFETY: channel is NULL or a live handle owned by the caller.
        unsafe { free_boxed::<rgrpc_channel>(channel) }
    })
}

/// A line of the `api` tracer.
pub(crate) fn api_trace(msg: impl FnOnce() -> String) {
    rgrpc_core::log::emit(
        rgrpc_core::log::Tracer::Api,
        rgrpc_core::log::Level::Debug,
        msg,
    );
}

/// A snapshot of the channel in JSON, like channelz but in-process: writes
/// a new buffer (owned by the caller: `rgrpc_buffer_free`) holding UTF-8
/// JSON text (not NUL-terminated; its length is `rgrpc_buffer_len`) to
/// `*json_out`. Keys: `target`, `authority`, `state`, `policy`,
/// `resolution` {`count`, `addresses` (the last answer, as peers:
/// `"ipv4:127.0.0.1:50051"`), `error`}, `subchannels` [{`address`, `state`,
/// `last_failure`, `connect_attempts`, `connect_failures`, `goaways`,
/// `breaks`}], `calls` {`started`, `succeeded`, `failed`, `active`},
/// `streams_open`, `keepalive` {`time_ms`, `pings`, `timeouts`,
/// `too_many_pings`}. Keys are stable; later versions may add keys.
/// Returns `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER` (channel or
/// json_out NULL; `*json_out` untouched). Thread-safe; reads counters
/// without stopping the channel, so figures taken together may be a few
/// events apart.
#[no_mangle]
pub extern "C" fn rgrpc_channel_snapshot(
    channel: *const rgrpc_channel,
    json_out: *mut *mut crate::buffer::rgrpc_buffer,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        if json_out.is_null() {
            return ch
                .last_error
                .fail(rgrpc_result::NullParameter, c"json_out is NULL");
        }
        let json = ch.channel.snapshot_json();
        write_out!(json_out, crate::buffer::received(json.into()));
        rgrpc_result::Ok
    })
}

/// Writes the channel's `:authority` (NUL-terminated) into `buf` of
/// `buf_len` bytes, truncating if needed, and the full length (without NUL)
/// to `*len_out` when not NULL. With `buf` NULL (or `buf_len` 0) nothing
/// is copied: a size query. Returns `RGRPC_RESULT_OK` or
/// `RGRPC_RESULT_NULL_PARAMETER`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_authority(
    channel: *const rgrpc_channel,
    buf: *mut c_char,
    buf_len: usize,
    len_out: *mut usize,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        let a = ch.channel.authority().as_bytes();
        if !buf.is_null() && buf_len > 0 {
            let n = a.len().min(buf_len - 1);
            // SAFETY: buf has buf_len writable bytes; n + 1 <= buf_len.
            unsafe {
                std::ptr::copy_nonoverlapping(a.as_ptr(), buf as *mut u8, n);
                *buf.add(n) = 0;
            }
        }
        if !len_out.is_null() {
            write_out!(len_out, a.len());
        }
        rgrpc_result::Ok
    })
}

/// The message of the last function on `channel` that failed in the
/// calling thread (UTF-8, NUL-terminated; `""` when none has, and for
/// NULL): e.g. after `RGRPC_RESULT_INVALID_METHOD` from `rgrpc_call_start`,
/// `"invalid method: \"Method\" must start with '/' ..."`. Messages are
/// kept per thread, so another thread's failure on the same channel never
/// changes (or frees) the string this thread reads; a successful function
/// leaves it as it was.
///
/// Borrowed: valid until this thread's next failing function on `channel`,
/// or `rgrpc_channel_free(channel)`, whichever comes first; do not free.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_last_error(channel: *const rgrpc_channel) -> *const c_char {
    boundary(|| {
        // SAFETY: channel is NULL or a live channel handle.
        match unsafe { try_ref::<rgrpc_channel>(channel) } {
            Some(ch) => ch.last_error.get(),
            None => c"".as_ptr(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The (key, type) rows of the option table in `rgrpc_channel_options`'
    /// doc, as the committed header has them (kept current by the
    /// header test).
    fn documented_options() -> Vec<(String, String)> {
        let header = include_str!("../include/rgrpc.h");
        header
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.trim_start_matches(" * ").split('|').collect();
                match cells.as_slice() {
                    ["", key, ty, _, ""] if key.trim().starts_with("`grpc.") => Some((
                        key.trim().trim_matches('`').to_string(),
                        ty.trim().to_string(),
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// The C documentation of the channel options agrees with the core's
    /// one table of them (`ChannelOptions::set`): every documented key is
    /// known and implemented, with the documented type.
    #[test]
    fn documented_options_match_the_core() {
        let rows = documented_options();
        assert!(rows.len() >= 15, "found only {rows:?}");
        for (key, ty) in rows {
            let (right, wrong) = match ty.as_str() {
                "int" => (OptionValue::Int(1000), OptionValue::Str("x".into())),
                "string" => (OptionValue::Str("foo.test".into()), OptionValue::Int(1)),
                other => panic!("{key}: unknown type {other:?} in the table"),
            };
            let mut o = ChannelOptions::default();
            match o.set(&key, right) {
                Ok(()) | Err(OptionError::InvalidValue { .. }) => {}
                Err(e) => panic!("{key} ({ty}): the core says {e}"),
            }
            assert!(
                matches!(o.set(&key, wrong), Err(OptionError::WrongType { .. })),
                "{key}: the core accepts a value of another type than {ty}"
            );
        }
    }
}
