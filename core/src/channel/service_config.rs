//! The service config: the JSON document given to a channel as the option
//! `grpc.service_config` (`doc/service_config.md` in grpc/grpc, the
//! `ServiceConfig` message of grpc-proto's `service_config.proto`, and
//! gRFC A6 for `retryPolicy`, `hedgingPolicy` and `retryThrottling`).
//!
//! This module only parses and looks up; the channel decides what to do
//! with the result. Parsing walks a `serde_json::Value` by hand so that every
//! error names the JSON path of the value at fault:
//! `grpc.service_config: at $.methodConfig[0].timeout: ...`.
//!
//! Conventions, as in protobuf's JSON mapping and C-core's loader:
//! * unknown fields are ignored (newer configs stay usable); a known field
//!   of the wrong type is an error;
//! * a field whose value is `null` counts as absent;
//! * integers may be JSON numbers or decimal strings (`"1024"`), as
//!   protobuf writes 64-bit integers;
//! * durations are protobuf `Duration` strings: `"1s"`, `"0.5s"`, `"1.000000001s"`.
//!
//! The first error found is reported (one line); the rest of the document
//! is not examined.

// Parsed at channel creation once the channel is wired to it; until then
// only the tests use it.

use crate::status::Code;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The most attempts a retry or hedging policy may ask for; larger values
/// are treated as this one, not refused (gRFC A6, "Limits on Retries and
/// Hedges"; C-core's `MAX_MAX_RETRY_ATTEMPTS`).
pub(crate) const MAX_ATTEMPTS_LIMIT: u32 = 5;

/// The largest `retryThrottling.maxTokens` (gRFC A6: in (0, 1000]).
const MAX_TOKENS_LIMIT: u32 = 1000;

/// The largest number of seconds a protobuf `Duration` may hold
/// (10,000 years, as `google/protobuf/duration.proto` documents).
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;

type Result<T> = std::result::Result<T, String>;

/// A parsed service config.
#[derive(Debug, Default)]
pub(crate) struct ServiceConfig {
    lb_policy: Option<LbPolicyConfig>,
    retry_throttling: Option<RetryThrottling>,
    /// The method config named `{}` (neither service nor method).
    default_method: Option<Arc<MethodConfig>>,
    /// Per service name: its service-wide config and its per-method ones.
    services: HashMap<Box<str>, ServiceMethods>,
}

/// The method configs named for one service.
#[derive(Debug, Default)]
struct ServiceMethods {
    /// Named `{"service": S}` (no method, or an empty one).
    all: Option<Arc<MethodConfig>>,
    /// Named `{"service": S, "method": M}`, by `M`.
    methods: HashMap<Box<str>, Arc<MethodConfig>>,
}

/// The load-balancing policy the service config chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LbPolicyConfig {
    /// The policy name, one of the names the build supports
    /// (`"pick_first"`, `"round_robin"`, ...).
    pub(crate) name: String,
    /// pick_first's `shuffleAddressList` (gRFC A62); false for other policies.
    pub(crate) shuffle_address_list: bool,
}

/// Settings for the calls of one method (or service, or all methods).
/// A field that is `None` was not given; the channel's or the call's own
/// setting applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MethodConfig {
    /// `waitForReady`.
    pub(crate) wait_for_ready: Option<bool>,
    /// `timeout`: the call's deadline is the earlier of this and the
    /// application's.
    pub(crate) timeout: Option<Duration>,
    /// `maxRequestMessageBytes` (0 is valid: only empty messages).
    pub(crate) max_request_message_bytes: Option<usize>,
    /// `maxResponseMessageBytes` (0 is valid: only empty messages).
    pub(crate) max_response_message_bytes: Option<usize>,
    /// `retryPolicy` (never together with `hedging_policy`).
    pub(crate) retry_policy: Option<RetryPolicy>,
    /// `hedgingPolicy` (never together with `retry_policy`).
    pub(crate) hedging_policy: Option<HedgingPolicy>,
}

/// `retryPolicy` (gRFC A6).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Attempts including the first: 2..=[`MAX_ATTEMPTS_LIMIT`] (larger
    /// values in the config are clamped).
    pub(crate) max_attempts: u32,
    /// Greater than zero.
    pub(crate) initial_backoff: Duration,
    /// Greater than zero.
    pub(crate) max_backoff: Duration,
    /// Greater than zero.
    pub(crate) backoff_multiplier: f64,
    /// Non-empty, without repeats, in the config's order.
    pub(crate) retryable_status_codes: Vec<Code>,
}

/// `hedgingPolicy` (gRFC A6).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HedgingPolicy {
    /// Attempts including the first: 2..=[`MAX_ATTEMPTS_LIMIT`] (larger
    /// values in the config are clamped).
    pub(crate) max_attempts: u32,
    /// Zero when not given.
    pub(crate) hedging_delay: Duration,
    /// Possibly empty, without repeats, in the config's order.
    pub(crate) non_fatal_status_codes: Vec<Code>,
}

/// `retryThrottling` (gRFC A6).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RetryThrottling {
    /// 1..=1000.
    pub(crate) max_tokens: u32,
    /// Greater than zero, with at most 3 decimal places: digits past the
    /// third are dropped (0.5466 is 0.546), so the exact value is
    /// `(token_ratio * 1000.0).round()` thousandths.
    pub(crate) token_ratio: f64,
}

impl ServiceConfig {
    /// Parses `json`. `supported_policies` are the load-balancing policy
    /// names this build has (e.g. `["pick_first", "round_robin"]`).
    ///
    /// Errors are one line that names the JSON path of the value at fault:
    /// `grpc.service_config: at $.methodConfig[0].timeout: ...`.
    pub(crate) fn parse(json: &str, supported_policies: &[&str]) -> Result<ServiceConfig> {
        let root = At::Root;
        let doc: Value = serde_json::from_str(json)
            .map_err(|e| root.err(format_args!("not valid JSON: {e}")))?;
        let top = as_object(&doc, &root)?;
        let lb_policy = parse_lb_policy(top, supported_policies, &root)?;
        let retry_throttling = optional(top, "retryThrottling", &root, parse_retry_throttling)?;
        let mut config = ServiceConfig {
            lb_policy,
            retry_throttling,
            ..ServiceConfig::default()
        };
        if let Some(list) = field(top, "methodConfig") {
            config.parse_method_configs(list, &root.key("methodConfig"))?;
        }
        Ok(config)
    }

    /// The policy chosen by `loadBalancingConfig` (its first entry whose
    /// name is supported), else by the legacy `loadBalancingPolicy` field;
    /// `None` when the config names no policy.
    pub(crate) fn lb_policy(&self) -> Option<&LbPolicyConfig> {
        self.lb_policy.as_ref()
    }

    /// The method config for a call path `/package.Service/Method`: the
    /// one named for that service and method, else the one for the whole
    /// service, else the default (the one named `{}`). Allocates nothing.
    pub(crate) fn method(&self, path: &str) -> Option<&Arc<MethodConfig>> {
        if let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.rsplit_once('/')) {
            if let Some(s) = self.services.get(service) {
                if let Some(m) = s.methods.get(method) {
                    return Some(m);
                }
                if let Some(all) = &s.all {
                    return Some(all);
                }
            }
        }
        self.default_method.as_ref()
    }

    /// `retryThrottling`, when given.
    pub(crate) fn retry_throttling(&self) -> Option<&RetryThrottling> {
        self.retry_throttling.as_ref()
    }

    /// Parses `methodConfig` and files each entry under its names. A name
    /// may appear once in the whole document; an entry without names (no
    /// `name`, or an empty list) is checked but applies to no call, as in
    /// C-core ("MethodConfig without names will be skipped").
    fn parse_method_configs(&mut self, list: &Value, at: &At) -> Result<()> {
        // Where each (service, method) was first named, for the duplicate error.
        let mut seen: HashMap<(&str, &str), (usize, usize)> = HashMap::new();
        for (i, entry) in as_array(list, at)?.iter().enumerate() {
            let at_i = at.index(i);
            let obj = as_object(entry, &at_i)?;
            let config = Arc::new(parse_method_config(obj, &at_i)?);
            let Some(names) = field(obj, "name") else {
                continue;
            };
            let at_names = at_i.key("name");
            for (j, name) in as_array(names, &at_names)?.iter().enumerate() {
                let at_j = at_names.index(j);
                let name = as_object(name, &at_j)?;
                let service = optional(name, "service", &at_j, as_str)?.unwrap_or("");
                let method = optional(name, "method", &at_j, as_str)?.unwrap_or("");
                if service.is_empty() && !method.is_empty() {
                    return Err(at_j.err(format_args!(
                        "method {method:?} is named without a service (only a name with neither is the default)"
                    )));
                }
                if let Some((i0, j0)) = seen.insert((service, method), (i, j)) {
                    let first = at.index(i0);
                    let first = first.key("name");
                    let first = first.index(j0);
                    let what = if service.is_empty() {
                        "a second default method config (a name with neither service nor method)"
                            .to_string()
                    } else if method.is_empty() {
                        format!("service {service:?} is named twice")
                    } else {
                        format!("service {service:?} method {method:?} is named twice")
                    };
                    return Err(at_j.err(format_args!("{what}; first at {first}")));
                }
                if service.is_empty() {
                    self.default_method = Some(config.clone());
                } else {
                    let s = self.services.entry(service.into()).or_default();
                    if method.is_empty() {
                        s.all = Some(config.clone());
                    } else {
                        s.methods.insert(method.into(), config.clone());
                    }
                }
            }
        }
        Ok(())
    }
}

/// One `methodConfig` entry's settings (its names are read by the caller).
fn parse_method_config(obj: &Map<String, Value>, at: &At) -> Result<MethodConfig> {
    let config = MethodConfig {
        wait_for_ready: optional(obj, "waitForReady", at, as_bool)?,
        timeout: optional(obj, "timeout", at, as_duration)?,
        max_request_message_bytes: optional(obj, "maxRequestMessageBytes", at, as_size)?,
        max_response_message_bytes: optional(obj, "maxResponseMessageBytes", at, as_size)?,
        retry_policy: optional(obj, "retryPolicy", at, parse_retry_policy)?,
        hedging_policy: optional(obj, "hedgingPolicy", at, parse_hedging_policy)?,
    };
    if config.retry_policy.is_some() && config.hedging_policy.is_some() {
        return Err(
            at.err("has both retryPolicy and hedgingPolicy; a method config may have at most one")
        );
    }
    Ok(config)
}

fn parse_retry_policy(v: &Value, at: &At) -> Result<RetryPolicy> {
    let obj = as_object(v, at)?;
    let policy = RetryPolicy {
        max_attempts: required(obj, "maxAttempts", at, as_max_attempts)?,
        initial_backoff: required(obj, "initialBackoff", at, as_positive_duration)?,
        max_backoff: required(obj, "maxBackoff", at, as_positive_duration)?,
        backoff_multiplier: required(obj, "backoffMultiplier", at, |v, at| {
            let m = as_number(v, at)?;
            if m > 0.0 {
                Ok(m)
            } else {
                Err(at.err(format_args!("must be greater than 0, found {m}")))
            }
        })?,
        retryable_status_codes: required(obj, "retryableStatusCodes", at, |v, at| {
            let codes = as_status_codes(v, at)?;
            if codes.is_empty() {
                return Err(at.err("must not be empty"));
            }
            Ok(codes)
        })?,
    };
    Ok(policy)
}

fn parse_hedging_policy(v: &Value, at: &At) -> Result<HedgingPolicy> {
    let obj = as_object(v, at)?;
    Ok(HedgingPolicy {
        max_attempts: required(obj, "maxAttempts", at, as_max_attempts)?,
        hedging_delay: optional(obj, "hedgingDelay", at, as_duration)?.unwrap_or(Duration::ZERO),
        non_fatal_status_codes: optional(obj, "nonFatalStatusCodes", at, as_status_codes)?
            .unwrap_or_default(),
    })
}

fn parse_retry_throttling(v: &Value, at: &At) -> Result<RetryThrottling> {
    let obj = as_object(v, at)?;
    let max_tokens = required(obj, "maxTokens", at, |v, at| {
        let n = as_integer(v, at)?;
        if (1..=i128::from(MAX_TOKENS_LIMIT)).contains(&n) {
            Ok(n as u32)
        } else {
            Err(at.err(format_args!("must be in 1..={MAX_TOKENS_LIMIT}, found {n}")))
        }
    })?;
    let milli = required(obj, "tokenRatio", at, |v, at| {
        let text = match v {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => {
                return Err(at.err(format_args!("expected a number, found {}", kind(other))));
            }
        };
        let milli = thousandths(&text).map_err(|e| at.err(format_args!("{text:?} {e}")))?;
        if milli == 0 {
            return Err(at.err(format_args!(
                "must be greater than 0 after keeping 3 decimal places, found {text}"
            )));
        }
        Ok(milli)
    })?;
    Ok(RetryThrottling {
        max_tokens,
        token_ratio: milli as f64 / 1000.0,
    })
}

/// `loadBalancingConfig` if given, else `loadBalancingPolicy`. Both are
/// checked when both are given, as C-core does.
fn parse_lb_policy(
    top: &Map<String, Value>,
    supported: &[&str],
    root: &At,
) -> Result<Option<LbPolicyConfig>> {
    let legacy = optional(top, "loadBalancingPolicy", root, |v, at| {
        let name = as_str(v, at)?;
        if name.is_empty() {
            // C-core treats an empty name as not set.
            return Ok(None);
        }
        let lower = name.to_ascii_lowercase();
        if !supported.contains(&lower.as_str()) {
            return Err(at.err(format_args!(
                "unknown load-balancing policy {name:?} (this build supports {supported:?})"
            )));
        }
        Ok(Some(LbPolicyConfig {
            name: lower,
            shuffle_address_list: false,
        }))
    })?
    .flatten();
    let chosen = optional(top, "loadBalancingConfig", root, |v, at| {
        parse_lb_config(v, supported, at)
    })?;
    Ok(chosen.or(legacy))
}

/// `loadBalancingConfig`: a list of `{"policy_name": {config}}` objects,
/// the first supported one chosen. Entries after the chosen one are not
/// examined (C-core stops there too). A bare `{"policy_name": {config}}`
/// is accepted as a list of one.
fn parse_lb_config(v: &Value, supported: &[&str], at: &At) -> Result<LbPolicyConfig> {
    let mut found = Vec::new();
    match v {
        Value::Array(list) => {
            for (i, entry) in list.iter().enumerate() {
                let at_i = at.index(i);
                let (name, config) = one_policy(entry, &at_i)?;
                if supported.contains(&name) {
                    return parse_policy_config(name, config, &at_i.key(name));
                }
                found.push(name);
            }
        }
        Value::Object(_) => {
            let (name, config) = one_policy(v, at)?;
            if supported.contains(&name) {
                return parse_policy_config(name, config, &at.key(name));
            }
            found.push(name);
        }
        other => {
            return Err(at.err(format_args!(
                "expected an array of {{\"policy_name\": {{config}}}} objects, found {}",
                kind(other)
            )));
        }
    }
    Err(at.err(format_args!(
        "no supported policy in the list (found {found:?}; this build supports {supported:?})"
    )))
}

/// An entry of `loadBalancingConfig`: exactly one key, the policy name,
/// whose value is the policy's config object.
fn one_policy<'v>(entry: &'v Value, at: &At) -> Result<(&'v str, &'v Map<String, Value>)> {
    let Value::Object(obj) = entry else {
        return Err(at.err(format_args!(
            "expected an object with one key (the policy name), found {}",
            kind(entry)
        )));
    };
    let mut keys = obj.iter();
    let (Some((name, config)), None) = (keys.next(), keys.next()) else {
        return Err(at.err(format_args!(
            "expected an object with exactly one key (the policy name), found {} keys",
            obj.len()
        )));
    };
    let Value::Object(config) = config else {
        return Err(at.key(name).err(format_args!(
            "the policy's config must be an object, found {}",
            kind(config)
        )));
    };
    Ok((name, config))
}

/// The config of a chosen (supported) policy. Only pick_first has a
/// setting this client reads; other policies' fields are ignored.
fn parse_policy_config(name: &str, config: &Map<String, Value>, at: &At) -> Result<LbPolicyConfig> {
    let shuffle_address_list = if name == "pick_first" {
        optional(config, "shuffleAddressList", at, as_bool)?.unwrap_or(false)
    } else {
        false
    };
    Ok(LbPolicyConfig {
        name: name.to_string(),
        shuffle_address_list,
    })
}

/// Parses a protobuf JSON `Duration`: decimal seconds with up to 9
/// fractional digits and a trailing `s` (`"1s"`, `"1.5s"`, `"0.000000001s"`).
/// Negative durations, signs, spaces and exponents are refused; the most
/// is 315,576,000,000 seconds.
pub(crate) fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let Some(body) = s.strip_suffix('s') else {
        return Err(format!(
            "{s:?} is not a duration: it must end in 's' (e.g. \"1.5s\")"
        ));
    };
    if body.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    let (whole, fraction) = match body.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (body, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) {
        return Err(format!(
            "{s:?} is not a duration: expected decimal seconds then 's' (e.g. \"1.5s\")"
        ));
    }
    let significant = whole.trim_start_matches('0');
    let seconds: u64 = if significant.is_empty() {
        0
    } else if significant.len() > 12 {
        u64::MAX
    } else {
        significant.parse().unwrap_or(u64::MAX)
    };
    if seconds > MAX_DURATION_SECONDS {
        return Err(format!(
            "{s:?} is more than the maximum of {MAX_DURATION_SECONDS} seconds"
        ));
    }
    let nanos = match fraction {
        None => 0,
        Some(f) if !digits(f) => {
            return Err(format!(
                "{s:?} is not a duration: expected digits after the '.' (e.g. \"1.5s\")"
            ));
        }
        Some(f) if f.len() > 9 => {
            return Err(format!(
                "{s:?} has more than 9 fractional digits (durations are in nanoseconds)"
            ));
        }
        Some(f) => {
            let n: u32 = f.parse().unwrap_or(0);
            n * 10u32.pow(9 - f.len() as u32)
        }
    };
    Ok(Duration::new(seconds, nanos))
}

/// A non-negative decimal number (JSON number text or a string, possibly
/// with an exponent) times 1000, digits past the third decimal place
/// dropped: `"0.5466"` is 546. Exact, without floating point.
fn thousandths(text: &str) -> std::result::Result<u32, &'static str> {
    const NOT_A_NUMBER: &str = "is not a number";
    const TOO_LARGE: &str = "is too large";
    if text.starts_with('-') {
        return Err("must be greater than 0");
    }
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => {
            let e = &text[i + 1..];
            let e = e.strip_prefix('+').unwrap_or(e);
            (&text[..i], e.parse::<i32>().map_err(|_| NOT_A_NUMBER)?)
        }
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(NOT_A_NUMBER);
    }
    // value * 1000 = the digits of whole ++ fraction, with the decimal
    // point after `point` of them; keep the digits before it.
    let point = whole.len() as i64 + i64::from(exponent) + 3;
    if point > 20 {
        return Err(TOO_LARGE);
    }
    let mut milli: u64 = 0;
    let mut digits = whole.bytes().chain(fraction.bytes());
    for _ in 0..point.max(0) {
        let d = digits.next().map_or(0, |b| u64::from(b - b'0'));
        milli = milli
            .checked_mul(10)
            .and_then(|m| m.checked_add(d))
            .ok_or(TOO_LARGE)?;
    }
    u32::try_from(milli).map_err(|_| TOO_LARGE)
}

// ---- where a value sits, for error messages ----

/// A JSON path (`$.methodConfig[0].timeout`), built on the stack while
/// walking and rendered only when there is an error to report.
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl<'a> At<'a> {
    fn key(&'a self, key: &'a str) -> At<'a> {
        At::Key(self, key)
    }

    fn index(&'a self, i: usize) -> At<'a> {
        At::Index(self, i)
    }

    /// The one-line error for the value here.
    fn err(&self, what: impl fmt::Display) -> String {
        format!("grpc.service_config: at {self}: {what}")
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => f.write_str("$"),
            At::Key(parent, key) => {
                let plain =
                    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if plain {
                    write!(f, "{parent}.{key}")
                } else {
                    write!(f, "{parent}[{key:?}]")
                }
            }
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

// ---- typed reads ----

/// The value of `key`; `null` counts as absent (protobuf JSON).
fn field<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// Reads `key` with `read` when it is present.
fn optional<'v, T>(
    obj: &'v Map<String, Value>,
    key: &str,
    at: &At,
    read: impl FnOnce(&'v Value, &At) -> Result<T>,
) -> Result<Option<T>> {
    match field(obj, key) {
        Some(v) => read(v, &at.key(key)).map(Some),
        None => Ok(None),
    }
}

/// Reads `key` with `read`; an error when it is absent.
fn required<'v, T>(
    obj: &'v Map<String, Value>,
    key: &str,
    at: &At,
    read: impl FnOnce(&'v Value, &At) -> Result<T>,
) -> Result<T> {
    optional(obj, key, at, read)?.ok_or_else(|| at.key(key).err("required but missing"))
}

/// "a string", "an array", ... for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_object<'v>(v: &'v Value, at: &At) -> Result<&'v Map<String, Value>> {
    match v {
        Value::Object(o) => Ok(o),
        other => Err(at.err(format_args!("expected an object, found {}", kind(other)))),
    }
}

fn as_array<'v>(v: &'v Value, at: &At) -> Result<&'v [Value]> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(at.err(format_args!("expected an array, found {}", kind(other)))),
    }
}

fn as_str<'v>(v: &'v Value, at: &At) -> Result<&'v str> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(at.err(format_args!("expected a string, found {}", kind(other)))),
    }
}

fn as_bool(v: &Value, at: &At) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(at.err(format_args!("expected a boolean, found {}", kind(other)))),
    }
}

fn as_duration(v: &Value, at: &At) -> Result<Duration> {
    match v {
        Value::String(s) => parse_duration(s).map_err(|e| at.err(e)),
        other => Err(at.err(format_args!(
            "expected a duration string such as \"1.5s\", found {}",
            kind(other)
        ))),
    }
}

fn as_positive_duration(v: &Value, at: &At) -> Result<Duration> {
    let d = as_duration(v, at)?;
    if d.is_zero() {
        return Err(at.err("must be greater than 0"));
    }
    Ok(d)
}

/// An integer: a JSON number with no fractional part (`1024`, `1e3`) or a
/// string of decimal digits with an optional `-` (`"1024"`).
fn as_integer(v: &Value, at: &At) -> Result<i128> {
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                return Ok(i128::from(u));
            }
            if let Some(i) = n.as_i64() {
                return Ok(i128::from(i));
            }
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() != 0.0 {
                Err(at.err(format_args!("expected an integer, found {n}")))
            } else if f.abs() >= 1e30 {
                Err(at.err(format_args!("{n} is out of range")))
            } else {
                Ok(f as i128)
            }
        }
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(at.err(format_args!("expected an integer, found the string {s:?}")));
            }
            s.parse()
                .map_err(|_| at.err(format_args!("{s:?} is out of range")))
        }
        other => Err(at.err(format_args!("expected an integer, found {}", kind(other)))),
    }
}

/// A number: a JSON number or a string holding one (protobuf JSON).
fn as_number(v: &Value, at: &At) -> Result<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        other => {
            return Err(at.err(format_args!("expected a number, found {}", kind(other))));
        }
    };
    match n {
        Some(n) if n.is_finite() => Ok(n),
        _ => Err(at.err(format_args!("expected a finite number, found {v}"))),
    }
}

/// A message size in bytes: a non-negative integer.
fn as_size(v: &Value, at: &At) -> Result<usize> {
    let n = as_integer(v, at)?;
    if n < 0 {
        return Err(at.err(format_args!("must not be negative, found {n}")));
    }
    usize::try_from(n).map_err(|_| at.err(format_args!("{n} is too large")))
}

/// `maxAttempts`: an integer of at least 2; above [`MAX_ATTEMPTS_LIMIT`]
/// it is clamped, not refused.
fn as_max_attempts(v: &Value, at: &At) -> Result<u32> {
    let n = as_integer(v, at)?;
    if n < 2 {
        return Err(at.err(format_args!(
            "must be at least 2 (the first attempt and one more), found {n}"
        )));
    }
    Ok(n.min(i128::from(MAX_ATTEMPTS_LIMIT)) as u32)
}

/// A list of status codes, each a name in any case (`"UNAVAILABLE"`,
/// `"unavailable"`) or a number (`14`), as gRFC A6 allows. Repeats are
/// dropped.
fn as_status_codes(v: &Value, at: &At) -> Result<Vec<Code>> {
    let mut codes = Vec::new();
    for (i, item) in as_array(v, at)?.iter().enumerate() {
        let at_i = at.index(i);
        let code = match item {
            Value::String(s) => Code::ALL
                .iter()
                .copied()
                .find(|c| c.name().eq_ignore_ascii_case(s))
                .ok_or_else(|| {
                    at_i.err(format_args!(
                        "unknown status code {s:?} (expected a name such as \"UNAVAILABLE\" or a number 0..=16)"
                    ))
                })?,
            Value::Number(_) => {
                let n = as_integer(item, &at_i)?;
                u32::try_from(n)
                    .ok()
                    .and_then(Code::from_u32)
                    .ok_or_else(|| {
                        at_i.err(format_args!("unknown status code {n} (codes are 0..=16)"))
                    })?
            }
            other => {
                return Err(at_i.err(format_args!(
                    "expected a status code name or number, found {}",
                    kind(other)
                )));
            }
        };
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICIES: &[&str] = &["pick_first", "round_robin"];

    fn parse(json: &str) -> Result<ServiceConfig> {
        ServiceConfig::parse(json, POLICIES)
    }

    fn ok(json: &str) -> ServiceConfig {
        parse(json).unwrap_or_else(|e| panic!("{json} should parse: {e}"))
    }

    fn err(json: &str) -> String {
        match parse(json) {
            Ok(c) => panic!("{json} should be refused, parsed as {c:?}"),
            Err(e) => {
                assert!(!e.contains('\n'), "error is not one line: {e:?}");
                e
            }
        }
    }

    /// Asserts the error is at `path` and mentions `what`.
    fn err_at(json: &str, path: &str, what: &str) {
        let e = err(json);
        let prefix = format!("grpc.service_config: at {path}: ");
        assert!(e.starts_with(&prefix), "{e:?} should start with {prefix:?}");
        assert!(e.contains(what), "{e:?} should mention {what:?}");
    }

    /// A one-entry methodConfig for the default name with `fields`.
    fn method_json(fields: &str) -> String {
        format!(r#"{{"methodConfig":[{{"name":[{{}}],{fields}}}]}}"#)
    }

    /// The default method config parsed from `fields`.
    fn default_method(fields: &str) -> MethodConfig {
        let c = ok(&method_json(fields));
        MethodConfig::clone(c.method("/any.Service/Any").expect("default config"))
    }

    const RETRY_FIELDS: &str = r#""maxAttempts":3,"initialBackoff":"0.1s","maxBackoff":"1s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]"#;

    /// RETRY_FIELDS with `key` replaced by `value` (or removed when None).
    fn retry_with(key: &str, value: Option<&str>) -> String {
        let mut obj: Map<String, Value> =
            serde_json::from_str(&format!("{{{RETRY_FIELDS}}}")).unwrap();
        match value {
            Some(v) => {
                obj.insert(key.into(), serde_json::from_str(v).unwrap());
            }
            None => {
                obj.remove(key);
            }
        }
        method_json(&format!(r#""retryPolicy":{}"#, Value::Object(obj)))
    }

    // ---- the document ----

    #[test]
    fn empty_config_has_nothing() {
        let c = ok("{}");
        assert_eq!(c.lb_policy(), None);
        assert_eq!(c.retry_throttling(), None);
        assert!(c.method("/a.B/C").is_none());
    }

    #[test]
    fn top_level_must_be_a_json_object() {
        err_at("[]", "$", "expected an object, found an array");
        err_at("\"x\"", "$", "expected an object, found a string");
        err_at("null", "$", "expected an object, found null");
        err_at("{\"methodConfig\": [", "$", "not valid JSON");
        err_at("", "$", "not valid JSON");
    }

    #[test]
    fn unknown_fields_are_ignored_everywhere() {
        let c = ok(r#"{
            "futureTopLevel": {"x": [1, 2]},
            "healthCheckConfig": {"serviceName": "h"},
            "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1, "future": true},
            "loadBalancingConfig": [{"round_robin": {"future": 1}}],
            "methodConfig": [{
                "name": [{"service": "a.B", "future": "x"}],
                "future": 5,
                "timeout": "2s",
                "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s",
                                "backoffMultiplier": 1, "retryableStatusCodes": [14],
                                "perAttemptRecvTimeout": "1s"}
            }]
        }"#);
        let m = c.method("/a.B/C").unwrap();
        assert_eq!(m.timeout, Some(Duration::from_secs(2)));
        assert_eq!(m.retry_policy.as_ref().unwrap().max_attempts, 2);
        assert_eq!(c.lb_policy().unwrap().name, "round_robin");
        assert_eq!(c.retry_throttling().unwrap().max_tokens, 10);
    }

    #[test]
    fn null_counts_as_absent() {
        let c = ok(r#"{"loadBalancingConfig": null, "retryThrottling": null,
                      "methodConfig": [{"name": [{"service": "a.B", "method": null}],
                                        "timeout": null, "waitForReady": null,
                                        "retryPolicy": null}]}"#);
        assert_eq!(c.lb_policy(), None);
        assert_eq!(c.retry_throttling(), None);
        assert_eq!(**c.method("/a.B/X").unwrap(), MethodConfig::default());
    }

    #[test]
    fn wrong_types_of_known_fields_are_errors() {
        err_at(
            r#"{"methodConfig": {}}"#,
            "$.methodConfig",
            "expected an array, found an object",
        );
        err_at(
            r#"{"methodConfig": [1]}"#,
            "$.methodConfig[0]",
            "expected an object, found a number",
        );
        err_at(
            r#"{"methodConfig": [{"name": {}}]}"#,
            "$.methodConfig[0].name",
            "expected an array",
        );
        err_at(
            r#"{"methodConfig": [{"name": ["a.B"]}]}"#,
            "$.methodConfig[0].name[0]",
            "expected an object, found a string",
        );
        err_at(
            r#"{"methodConfig": [{"name": [{"service": 1}]}]}"#,
            "$.methodConfig[0].name[0].service",
            "expected a string, found a number",
        );
        err_at(
            r#"{"methodConfig": [{"name": [{"service": "a", "method": true}]}]}"#,
            "$.methodConfig[0].name[0].method",
            "expected a string, found a boolean",
        );
        err_at(
            &method_json(r#""waitForReady": "true""#),
            "$.methodConfig[0].waitForReady",
            "expected a boolean, found a string",
        );
        err_at(
            &method_json(r#""timeout": 1"#),
            "$.methodConfig[0].timeout",
            "expected a duration string",
        );
        err_at(
            &method_json(r#""retryPolicy": []"#),
            "$.methodConfig[0].retryPolicy",
            "expected an object, found an array",
        );
        err_at(
            &method_json(r#""hedgingPolicy": "x""#),
            "$.methodConfig[0].hedgingPolicy",
            "expected an object, found a string",
        );
        err_at(
            r#"{"retryThrottling": 5}"#,
            "$.retryThrottling",
            "expected an object, found a number",
        );
        err_at(
            r#"{"loadBalancingPolicy": ["round_robin"]}"#,
            "$.loadBalancingPolicy",
            "expected a string, found an array",
        );
    }

    #[test]
    fn odd_keys_are_quoted_in_paths() {
        err_at(
            r#"{"loadBalancingConfig": [{"my policy": 1}]}"#,
            r#"$.loadBalancingConfig[0]["my policy"]"#,
            "must be an object",
        );
    }

    // ---- method configs: fields ----

    #[test]
    fn method_config_fields() {
        let m = default_method(
            r#""waitForReady": true, "timeout": "1.5s",
               "maxRequestMessageBytes": 1024, "maxResponseMessageBytes": "4194304""#,
        );
        assert_eq!(
            m,
            MethodConfig {
                wait_for_ready: Some(true),
                timeout: Some(Duration::from_millis(1500)),
                max_request_message_bytes: Some(1024),
                max_response_message_bytes: Some(4 << 20),
                retry_policy: None,
                hedging_policy: None,
            }
        );
        assert_eq!(
            default_method(r#""waitForReady": false"#).wait_for_ready,
            Some(false)
        );
        // Zero is a valid size: only empty messages.
        assert_eq!(
            default_method(r#""maxRequestMessageBytes": 0"#).max_request_message_bytes,
            Some(0)
        );
        // Zero is a valid timeout.
        assert_eq!(
            default_method(r#""timeout": "0s""#).timeout,
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn sizes_are_non_negative_integers() {
        let size = |v: &str| {
            default_method(&format!(r#""maxResponseMessageBytes": {v}"#)).max_response_message_bytes
        };
        assert_eq!(size("7"), Some(7));
        assert_eq!(size("\"7\""), Some(7));
        assert_eq!(size("1e3"), Some(1000));
        assert_eq!(size("2.0"), Some(2));
        assert_eq!(size("18446744073709551615"), Some(usize::MAX));
        let at = "$.methodConfig[0].maxResponseMessageBytes";
        let bad = |v: &str, what: &str| {
            err_at(
                &method_json(&format!(r#""maxResponseMessageBytes": {v}"#)),
                at,
                what,
            )
        };
        bad("-1", "must not be negative, found -1");
        bad("\"-5\"", "must not be negative, found -5");
        bad("1.5", "expected an integer, found 1.5");
        bad("\"1.5\"", "expected an integer, found the string \"1.5\"");
        bad("\"\"", "expected an integer");
        bad("\" 7\"", "expected an integer");
        bad("true", "expected an integer, found a boolean");
        bad("[1]", "expected an integer, found an array");
        bad("1e40", "out of range");
        bad("\"18446744073709551616\"", "too large");
    }

    // ---- durations ----

    #[test]
    fn durations_parse() {
        let d = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(d("10s"), Duration::from_secs(10));
        assert_eq!(d("0s"), Duration::ZERO);
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("0.000001s"), Duration::from_micros(1));
        assert_eq!(d("0.000000001s"), Duration::from_nanos(1));
        assert_eq!(d("1.123456789s"), Duration::new(1, 123_456_789));
        assert_eq!(d("0.1s"), Duration::from_millis(100));
        assert_eq!(d("0.100s"), Duration::from_millis(100));
        assert_eq!(d("007s"), Duration::from_secs(7));
        assert_eq!(d("315576000000s"), Duration::from_secs(315_576_000_000));
        assert_eq!(
            d("315576000000.999999999s"),
            Duration::new(315_576_000_000, 999_999_999)
        );
    }

    #[test]
    fn bad_durations_are_refused() {
        let e = |s: &str| parse_duration(s).expect_err(s);
        assert!(e("1").contains("must end in 's'"));
        assert!(e("1ms").contains("not a duration"));
        assert!(e("").contains("must end in 's'"));
        assert!(e("s").contains("not a duration"));
        assert!(e("-1s").contains("negative"));
        assert!(e("-0.5s").contains("negative"));
        assert!(e("+1s").contains("not a duration"));
        assert!(e(" 1s").contains("not a duration"));
        assert!(e("1 s").contains("not a duration"));
        assert!(e(".5s").contains("not a duration"));
        assert!(e("1.s").contains("digits after the '.'"));
        assert!(e("1.5.5s").contains("digits after the '.'"));
        assert!(e("1e3s").contains("not a duration"));
        assert!(e("0.0000000001s").contains("more than 9 fractional digits"));
        assert!(e("315576000001s").contains("maximum"));
        assert!(e("99999999999999999999999s").contains("maximum"));
    }

    #[test]
    fn duration_errors_name_the_path() {
        err_at(
            &method_json(r#""timeout": "-1s""#),
            "$.methodConfig[0].timeout",
            "\"-1s\" is negative",
        );
        err_at(
            &method_json(r#""timeout": "1""#),
            "$.methodConfig[0].timeout",
            "must end in 's'",
        );
    }

    // ---- method configs: names and lookup ----

    const PRECEDENCE: &str = r#"{"methodConfig": [
        {"name": [{}], "timeout": "1s"},
        {"name": [{"service": "pkg.Svc"}], "timeout": "2s"},
        {"name": [{"service": "pkg.Svc", "method": "Exact"}, {"service": "other.Svc", "method": "M"}],
         "timeout": "3s"}
    ]}"#;

    fn timeout_for(c: &ServiceConfig, path: &str) -> Option<u64> {
        c.method(path).map(|m| m.timeout.unwrap().as_secs())
    }

    #[test]
    fn lookup_prefers_method_then_service_then_default() {
        let c = ok(PRECEDENCE);
        assert_eq!(timeout_for(&c, "/pkg.Svc/Exact"), Some(3));
        assert_eq!(timeout_for(&c, "/pkg.Svc/Other"), Some(2));
        assert_eq!(timeout_for(&c, "/other.Svc/M"), Some(3));
        // other.Svc has no service-wide entry: its other methods get the default.
        assert_eq!(timeout_for(&c, "/other.Svc/N"), Some(1));
        assert_eq!(timeout_for(&c, "/unknown.Svc/Exact"), Some(1));
        // Names are case-sensitive.
        assert_eq!(timeout_for(&c, "/pkg.Svc/exact"), Some(2));
        assert_eq!(timeout_for(&c, "/PKG.Svc/Exact"), Some(1));
        // Paths that are not "/service/method" get the default.
        assert_eq!(timeout_for(&c, "pkg.Svc/Exact"), Some(1));
        assert_eq!(timeout_for(&c, "/pkg.Svc"), Some(1));
        assert_eq!(timeout_for(&c, ""), Some(1));
        // An empty method after the service is the service-wide entry.
        assert_eq!(timeout_for(&c, "/pkg.Svc/"), Some(2));
        // Names of one entry share one config.
        assert!(Arc::ptr_eq(
            c.method("/pkg.Svc/Exact").unwrap(),
            c.method("/other.Svc/M").unwrap()
        ));
    }

    #[test]
    fn lookup_without_a_default() {
        let c = ok(
            r#"{"methodConfig": [{"name": [{"service": "s.S", "method": "M"}], "timeout": "1s"}]}"#,
        );
        assert_eq!(timeout_for(&c, "/s.S/M"), Some(1));
        assert_eq!(timeout_for(&c, "/s.S/N"), None);
        assert_eq!(timeout_for(&c, "/t.T/M"), None);
    }

    #[test]
    fn empty_strings_mean_absent_in_names() {
        // {"service": ""} and {"service": "", "method": ""} are the default.
        let c =
            ok(r#"{"methodConfig": [{"name": [{"service": "", "method": ""}], "timeout": "4s"}]}"#);
        assert_eq!(timeout_for(&c, "/x.Y/Z"), Some(4));
        // {"service": S, "method": ""} is service-wide.
        let c = ok(
            r#"{"methodConfig": [{"name": [{"service": "x.Y", "method": ""}], "timeout": "5s"}]}"#,
        );
        assert_eq!(timeout_for(&c, "/x.Y/Z"), Some(5));
        assert_eq!(timeout_for(&c, "/x.W/Z"), None);
    }

    #[test]
    fn method_without_service_is_an_error() {
        err_at(
            r#"{"methodConfig": [{"name": [{"service": "a.B"}, {"method": "M"}]}]}"#,
            "$.methodConfig[0].name[1]",
            "method \"M\" is named without a service",
        );
        err_at(
            r#"{"methodConfig": [{"name": [{"service": "", "method": "M"}]}]}"#,
            "$.methodConfig[0].name[0]",
            "without a service",
        );
    }

    #[test]
    fn duplicate_names_are_errors() {
        err_at(
            r#"{"methodConfig": [{"name": [{"service": "a.B", "method": "M"}, {"service": "a.B", "method": "M"}]}]}"#,
            "$.methodConfig[0].name[1]",
            "service \"a.B\" method \"M\" is named twice; first at $.methodConfig[0].name[0]",
        );
        err_at(
            r#"{"methodConfig": [{"name": [{"service": "a.B"}]}, {"name": [{"service": "x.Y"}, {"service": "a.B", "method": ""}]}]}"#,
            "$.methodConfig[1].name[1]",
            "service \"a.B\" is named twice; first at $.methodConfig[0].name[0]",
        );
        err_at(
            r#"{"methodConfig": [{"name": [{}]}, {"name": [{"service": ""}]}]}"#,
            "$.methodConfig[1].name[0]",
            "a second default method config",
        );
        // The same method under two services is not a duplicate.
        ok(
            r#"{"methodConfig": [{"name": [{"service": "a.B", "method": "M"}, {"service": "a.C", "method": "M"}]}]}"#,
        );
    }

    #[test]
    fn method_config_without_names_applies_to_nothing_but_is_checked() {
        let c = ok(r#"{"methodConfig": [{"timeout": "1s"}, {"name": [], "timeout": "2s"}]}"#);
        assert!(c.method("/a.B/C").is_none());
        err_at(
            r#"{"methodConfig": [{"timeout": "1"}]}"#,
            "$.methodConfig[0].timeout",
            "must end in 's'",
        );
    }

    // ---- retryPolicy ----

    #[test]
    fn retry_policy_parses() {
        let m = default_method(
            r#""retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
                               "backoffMultiplier": 1.5,
                               "retryableStatusCodes": ["UNAVAILABLE", "resource_exhausted", 10, "Unavailable", 14]}"#,
        );
        assert_eq!(
            m.retry_policy,
            Some(RetryPolicy {
                max_attempts: 4,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                backoff_multiplier: 1.5,
                retryable_status_codes: vec![
                    Code::Unavailable,
                    Code::ResourceExhausted,
                    Code::Aborted
                ],
            })
        );
        assert_eq!(m.hedging_policy, None);
    }

    #[test]
    fn retry_max_attempts_is_at_least_2_and_clamped_to_5() {
        let attempts = |v: &str| {
            let c = ok(&retry_with("maxAttempts", Some(v)));
            c.method("/a.B/C")
                .unwrap()
                .retry_policy
                .as_ref()
                .unwrap()
                .max_attempts
        };
        assert_eq!(attempts("2"), 2);
        assert_eq!(attempts("5"), 5);
        assert_eq!(attempts("6"), 5);
        assert_eq!(attempts("1000000"), 5);
        assert_eq!(attempts("18446744073709551615"), 5);
        assert_eq!(attempts("\"3\""), 3);
        let at = "$.methodConfig[0].retryPolicy.maxAttempts";
        err_at(
            &retry_with("maxAttempts", Some("1")),
            at,
            "must be at least 2",
        );
        err_at(
            &retry_with("maxAttempts", Some("0")),
            at,
            "must be at least 2",
        );
        err_at(&retry_with("maxAttempts", Some("-3")), at, "found -3");
        err_at(
            &retry_with("maxAttempts", Some("2.5")),
            at,
            "expected an integer",
        );
        err_at(
            &retry_with("maxAttempts", Some("\"x\"")),
            at,
            "expected an integer",
        );
        err_at(&retry_with("maxAttempts", None), at, "required but missing");
    }

    #[test]
    fn retry_required_fields() {
        for key in [
            "maxAttempts",
            "initialBackoff",
            "maxBackoff",
            "backoffMultiplier",
            "retryableStatusCodes",
        ] {
            err_at(
                &retry_with(key, None),
                &format!("$.methodConfig[0].retryPolicy.{key}"),
                "required but missing",
            );
            err_at(
                &retry_with(key, Some("null")),
                &format!("$.methodConfig[0].retryPolicy.{key}"),
                "required but missing",
            );
        }
    }

    #[test]
    fn retry_backoffs_are_positive_durations() {
        for key in ["initialBackoff", "maxBackoff"] {
            let at = format!("$.methodConfig[0].retryPolicy.{key}");
            err_at(
                &retry_with(key, Some("\"0s\"")),
                &at,
                "must be greater than 0",
            );
            err_at(
                &retry_with(key, Some("\"0.000s\"")),
                &at,
                "must be greater than 0",
            );
            err_at(&retry_with(key, Some("\"-1s\"")), &at, "negative");
            err_at(
                &retry_with(key, Some("1")),
                &at,
                "expected a duration string",
            );
        }
        let c = ok(&retry_with("initialBackoff", Some("\"0.000000001s\"")));
        let p = c.method("/a.B/C").unwrap().retry_policy.clone().unwrap();
        assert_eq!(p.initial_backoff, Duration::from_nanos(1));
    }

    #[test]
    fn retry_backoff_multiplier_is_positive() {
        let multiplier = |v: &str| {
            let c = ok(&retry_with("backoffMultiplier", Some(v)));
            c.method("/a.B/C")
                .unwrap()
                .retry_policy
                .as_ref()
                .unwrap()
                .backoff_multiplier
        };
        assert_eq!(multiplier("2"), 2.0);
        assert_eq!(multiplier("0.5"), 0.5);
        assert_eq!(multiplier("\"1.25\""), 1.25);
        let at = "$.methodConfig[0].retryPolicy.backoffMultiplier";
        err_at(
            &retry_with("backoffMultiplier", Some("0")),
            at,
            "must be greater than 0, found 0",
        );
        err_at(
            &retry_with("backoffMultiplier", Some("-1.5")),
            at,
            "must be greater than 0, found -1.5",
        );
        err_at(
            &retry_with("backoffMultiplier", Some("\"inf\"")),
            at,
            "expected a finite number",
        );
        err_at(
            &retry_with("backoffMultiplier", Some("\"two\"")),
            at,
            "expected a finite number",
        );
        err_at(
            &retry_with("backoffMultiplier", Some("true")),
            at,
            "expected a number, found a boolean",
        );
    }

    #[test]
    fn retryable_status_codes() {
        let at = "$.methodConfig[0].retryPolicy.retryableStatusCodes";
        err_at(
            &retry_with("retryableStatusCodes", Some("[]")),
            at,
            "must not be empty",
        );
        err_at(
            &retry_with("retryableStatusCodes", Some("\"UNAVAILABLE\"")),
            at,
            "expected an array",
        );
        err_at(
            &retry_with(
                "retryableStatusCodes",
                Some(r#"["UNAVAILABLE", "UNAVAILABLE_"]"#),
            ),
            &format!("{at}[1]"),
            "unknown status code \"UNAVAILABLE_\"",
        );
        err_at(
            &retry_with("retryableStatusCodes", Some("[17]")),
            &format!("{at}[0]"),
            "unknown status code 17",
        );
        err_at(
            &retry_with("retryableStatusCodes", Some("[-1]")),
            &format!("{at}[0]"),
            "unknown status code -1",
        );
        err_at(
            &retry_with("retryableStatusCodes", Some("[1.5]")),
            &format!("{at}[0]"),
            "expected an integer",
        );
        // A numeric string is neither a name nor a number.
        err_at(
            &retry_with("retryableStatusCodes", Some(r#"["14"]"#)),
            &format!("{at}[0]"),
            "unknown status code \"14\"",
        );
        err_at(
            &retry_with("retryableStatusCodes", Some("[true]")),
            &format!("{at}[0]"),
            "found a boolean",
        );
        // Every code by name and by number.
        for code in Code::ALL {
            for v in [
                format!("[\"{}\"]", code.name()),
                format!("[{}]", code as u32),
            ] {
                let c = ok(&retry_with("retryableStatusCodes", Some(&v)));
                let p = c.method("/a.B/C").unwrap().retry_policy.clone().unwrap();
                assert_eq!(p.retryable_status_codes, vec![code], "{v}");
            }
        }
    }

    #[test]
    fn retry_and_hedging_together_is_an_error() {
        err_at(
            &method_json(&format!(
                r#""retryPolicy": {{{RETRY_FIELDS}}}, "hedgingPolicy": {{"maxAttempts": 2}}"#
            )),
            "$.methodConfig[0]",
            "has both retryPolicy and hedgingPolicy",
        );
    }

    // ---- hedgingPolicy ----

    #[test]
    fn hedging_policy_parses_with_defaults() {
        let m = default_method(r#""hedgingPolicy": {"maxAttempts": 3}"#);
        assert_eq!(
            m.hedging_policy,
            Some(HedgingPolicy {
                max_attempts: 3,
                hedging_delay: Duration::ZERO,
                non_fatal_status_codes: vec![],
            })
        );
        let m = default_method(
            r#""hedgingPolicy": {"maxAttempts": 9, "hedgingDelay": "0.5s",
                                 "nonFatalStatusCodes": ["UNAVAILABLE", "internal", 10]}"#,
        );
        assert_eq!(
            m.hedging_policy,
            Some(HedgingPolicy {
                max_attempts: MAX_ATTEMPTS_LIMIT,
                hedging_delay: Duration::from_millis(500),
                non_fatal_status_codes: vec![Code::Unavailable, Code::Internal, Code::Aborted],
            })
        );
        assert_eq!(m.retry_policy, None);
        // An empty list is allowed (every failure is fatal).
        let m = default_method(r#""hedgingPolicy": {"maxAttempts": 2, "nonFatalStatusCodes": []}"#);
        assert_eq!(m.hedging_policy.unwrap().non_fatal_status_codes, vec![]);
    }

    #[test]
    fn hedging_policy_errors() {
        let at = "$.methodConfig[0].hedgingPolicy";
        err_at(
            &method_json(r#""hedgingPolicy": {}"#),
            &format!("{at}.maxAttempts"),
            "required but missing",
        );
        err_at(
            &method_json(r#""hedgingPolicy": {"maxAttempts": 1}"#),
            &format!("{at}.maxAttempts"),
            "must be at least 2",
        );
        err_at(
            &method_json(r#""hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "-0.1s"}"#),
            &format!("{at}.hedgingDelay"),
            "negative",
        );
        err_at(
            &method_json(r#""hedgingPolicy": {"maxAttempts": 2, "nonFatalStatusCodes": ["NOPE"]}"#),
            &format!("{at}.nonFatalStatusCodes[0]"),
            "unknown status code \"NOPE\"",
        );
        err_at(
            &method_json(r#""hedgingPolicy": {"maxAttempts": 2, "nonFatalStatusCodes": 14}"#),
            &format!("{at}.nonFatalStatusCodes"),
            "expected an array",
        );
    }

    // ---- retryThrottling ----

    fn throttling(fields: &str) -> Result<ServiceConfig> {
        parse(&format!(r#"{{"retryThrottling": {{{fields}}}}}"#))
    }

    fn ratio(v: &str) -> f64 {
        let c = throttling(&format!(r#""maxTokens": 10, "tokenRatio": {v}"#)).unwrap();
        c.retry_throttling().unwrap().token_ratio
    }

    #[test]
    fn retry_throttling_parses() {
        let c = throttling(r#""maxTokens": 10, "tokenRatio": 0.1"#).unwrap();
        assert_eq!(
            c.retry_throttling(),
            Some(&RetryThrottling {
                max_tokens: 10,
                token_ratio: 0.1
            })
        );
        let c = throttling(r#""maxTokens": "1000", "tokenRatio": 1"#).unwrap();
        assert_eq!(c.retry_throttling().unwrap().max_tokens, 1000);
        let c = throttling(r#""maxTokens": 1, "tokenRatio": 1"#).unwrap();
        assert_eq!(c.retry_throttling().unwrap().max_tokens, 1);
    }

    #[test]
    fn token_ratio_keeps_three_decimal_places() {
        assert_eq!(ratio("0.5466"), 0.546);
        assert_eq!(ratio("0.5469"), 0.546);
        // Decimal, not binary, truncation: 0.29 * 1000 is 289.99... in f64.
        assert_eq!(ratio("0.29"), 0.29);
        assert_eq!(ratio("0.001"), 0.001);
        assert_eq!(ratio("1e-3"), 0.001);
        assert_eq!(ratio("2.5E1"), 25.0);
        assert_eq!(ratio("\"0.5466\""), 0.546);
        assert_eq!(ratio("3"), 3.0);
    }

    #[test]
    fn retry_throttling_errors() {
        let at = "$.retryThrottling";
        let bad = |fields: &str, path: &str, what: &str| {
            let e = throttling(fields).expect_err(fields);
            assert!(
                e.starts_with(&format!("grpc.service_config: at {at}{path}: ")),
                "{e}"
            );
            assert!(e.contains(what), "{e:?} should mention {what:?}");
        };
        bad(r#""tokenRatio": 1"#, ".maxTokens", "required but missing");
        bad(r#""maxTokens": 10"#, ".tokenRatio", "required but missing");
        bad(
            r#""maxTokens": 0, "tokenRatio": 1"#,
            ".maxTokens",
            "must be in 1..=1000, found 0",
        );
        bad(
            r#""maxTokens": 1001, "tokenRatio": 1"#,
            ".maxTokens",
            "must be in 1..=1000, found 1001",
        );
        bad(
            r#""maxTokens": -1, "tokenRatio": 1"#,
            ".maxTokens",
            "found -1",
        );
        bad(
            r#""maxTokens": 1.5, "tokenRatio": 1"#,
            ".maxTokens",
            "expected an integer",
        );
        bad(
            r#""maxTokens": 10, "tokenRatio": 0"#,
            ".tokenRatio",
            "must be greater than 0",
        );
        bad(
            r#""maxTokens": 10, "tokenRatio": 0.0009"#,
            ".tokenRatio",
            "must be greater than 0 after keeping 3 decimal places",
        );
        bad(
            r#""maxTokens": 10, "tokenRatio": -0.5"#,
            ".tokenRatio",
            "must be greater than 0",
        );
        bad(
            r#""maxTokens": 10, "tokenRatio": "abc""#,
            ".tokenRatio",
            "is not a number",
        );
        bad(
            r#""maxTokens": 10, "tokenRatio": ".5""#,
            ".tokenRatio",
            "is not a number",
        );
        bad(
            r#""maxTokens": 10, "tokenRatio": true"#,
            ".tokenRatio",
            "expected a number, found a boolean",
        );
        bad(
            r#""maxTokens": 10, "tokenRatio": 1e30"#,
            ".tokenRatio",
            "is too large",
        );
    }

    #[test]
    fn thousandths_is_exact() {
        assert_eq!(thousandths("0"), Ok(0));
        assert_eq!(thousandths("0.0001"), Ok(0));
        assert_eq!(thousandths("12.3456"), Ok(12_345));
        assert_eq!(thousandths("1.5e2"), Ok(150_000));
        assert_eq!(thousandths("15e-4"), Ok(1));
        assert_eq!(thousandths("1e-300"), Ok(0));
        assert_eq!(thousandths("4294967.295"), Ok(u32::MAX));
        assert!(thousandths("4294967.296").is_err());
        assert!(thousandths("1e999999999").is_err());
        assert!(thousandths("1.2.3").is_err());
        assert!(thousandths("1e").is_err());
        assert!(thousandths("").is_err());
    }

    // ---- load balancing ----

    fn lb(json: &str) -> Option<LbPolicyConfig> {
        ok(json).lb_policy().cloned()
    }

    fn policy(name: &str, shuffle: bool) -> Option<LbPolicyConfig> {
        Some(LbPolicyConfig {
            name: name.into(),
            shuffle_address_list: shuffle,
        })
    }

    #[test]
    fn first_supported_lb_config_wins() {
        assert_eq!(
            lb(r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#),
            policy("round_robin", false)
        );
        assert_eq!(
            lb(
                r#"{"loadBalancingConfig": [{"xds_wrr": {"x": 1}}, {"grpclb": {}}, {"pick_first": {}}, {"round_robin": {}}]}"#
            ),
            policy("pick_first", false)
        );
        assert_eq!(
            lb(r#"{"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": true}}]}"#),
            policy("pick_first", true)
        );
        assert_eq!(
            lb(r#"{"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": false}}]}"#),
            policy("pick_first", false)
        );
        // Policy names in loadBalancingConfig are case-sensitive.
        assert_eq!(
            lb(r#"{"loadBalancingConfig": [{"ROUND_ROBIN": {}}, {"pick_first": {}}]}"#),
            policy("pick_first", false)
        );
        // Entries after the chosen one are not examined.
        assert_eq!(
            lb(r#"{"loadBalancingConfig": [{"round_robin": {}}, "not an entry"]}"#),
            policy("round_robin", false)
        );
        // A bare entry is a list of one.
        assert_eq!(
            lb(r#"{"loadBalancingConfig": {"round_robin": {}}}"#),
            policy("round_robin", false)
        );
    }

    #[test]
    fn lb_config_without_a_supported_policy_is_an_error() {
        err_at(
            r#"{"loadBalancingConfig": [{"grpclb": {}}, {"xds_wrr": {}}]}"#,
            "$.loadBalancingConfig",
            r#"no supported policy in the list (found ["grpclb", "xds_wrr"]; this build supports ["pick_first", "round_robin"])"#,
        );
        err_at(
            r#"{"loadBalancingConfig": []}"#,
            "$.loadBalancingConfig",
            "found []",
        );
        err_at(
            r#"{"loadBalancingConfig": {"grpclb": {}}}"#,
            "$.loadBalancingConfig",
            "found [\"grpclb\"]",
        );
        // With no policies built in, nothing is supported.
        let e = ServiceConfig::parse(r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#, &[])
            .unwrap_err();
        assert!(e.contains("this build supports []"), "{e}");
    }

    #[test]
    fn lb_config_entry_shape() {
        err_at(
            r#"{"loadBalancingConfig": "round_robin"}"#,
            "$.loadBalancingConfig",
            "expected an array",
        );
        err_at(
            r#"{"loadBalancingConfig": ["round_robin"]}"#,
            "$.loadBalancingConfig[0]",
            "expected an object with one key",
        );
        err_at(
            r#"{"loadBalancingConfig": [{}]}"#,
            "$.loadBalancingConfig[0]",
            "exactly one key (the policy name), found 0 keys",
        );
        err_at(
            r#"{"loadBalancingConfig": [{"pick_first": {}, "round_robin": {}}]}"#,
            "$.loadBalancingConfig[0]",
            "found 2 keys",
        );
        err_at(
            r#"{"loadBalancingConfig": {}}"#,
            "$.loadBalancingConfig",
            "found 0 keys",
        );
        err_at(
            r#"{"loadBalancingConfig": {"pick_first": {}, "round_robin": {}}}"#,
            "$.loadBalancingConfig",
            "found 2 keys",
        );
        // Unsupported entries before the chosen one are checked too.
        err_at(
            r#"{"loadBalancingConfig": [{"grpclb": []}, {"round_robin": {}}]}"#,
            "$.loadBalancingConfig[0].grpclb",
            "the policy's config must be an object, found an array",
        );
        err_at(
            r#"{"loadBalancingConfig": [{"round_robin": null}]}"#,
            "$.loadBalancingConfig[0].round_robin",
            "must be an object, found null",
        );
        err_at(
            r#"{"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": "yes"}}]}"#,
            "$.loadBalancingConfig[0].pick_first.shuffleAddressList",
            "expected a boolean, found a string",
        );
    }

    #[test]
    fn legacy_lb_policy_field() {
        assert_eq!(
            lb(r#"{"loadBalancingPolicy": "round_robin"}"#),
            policy("round_robin", false)
        );
        assert_eq!(
            lb(r#"{"loadBalancingPolicy": "ROUND_ROBIN"}"#),
            policy("round_robin", false)
        );
        assert_eq!(
            lb(r#"{"loadBalancingPolicy": "Pick_First"}"#),
            policy("pick_first", false)
        );
        assert_eq!(lb(r#"{"loadBalancingPolicy": ""}"#), None);
        err_at(
            r#"{"loadBalancingPolicy": "GRPCLB"}"#,
            "$.loadBalancingPolicy",
            r#"unknown load-balancing policy "GRPCLB" (this build supports ["pick_first", "round_robin"])"#,
        );
        // loadBalancingConfig wins over the legacy field, which is still checked.
        assert_eq!(
            lb(
                r#"{"loadBalancingPolicy": "round_robin", "loadBalancingConfig": [{"pick_first": {}}]}"#
            ),
            policy("pick_first", false)
        );
        err_at(
            r#"{"loadBalancingPolicy": "nope", "loadBalancingConfig": [{"pick_first": {}}]}"#,
            "$.loadBalancingPolicy",
            "unknown load-balancing policy",
        );
    }

    #[test]
    fn errors_are_one_line_even_with_odd_names() {
        let e = err(r#"{"loadBalancingConfig": [{"a\nb": {}}]}"#);
        assert!(e.contains(r#"["a\nb"]"#), "{e}");
        let e = err(r#"{"methodConfig": [{"name": [{"method": "x\ny"}]}]}"#);
        assert!(e.contains(r#""x\ny""#), "{e}");
    }

    #[test]
    fn a_full_config() {
        let c = ok(r#"{
            "loadBalancingConfig": [{"round_robin": {}}],
            "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.25},
            "methodConfig": [
                {"name": [{"service": "echo.Echo"}],
                 "waitForReady": true, "timeout": "30s",
                 "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "2s",
                                 "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}},
                {"name": [{"service": "echo.Echo", "method": "Stream"}],
                 "maxRequestMessageBytes": 65536,
                 "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.1s"}}
            ]
        }"#);
        assert_eq!(c.lb_policy(), policy("round_robin", false).as_ref());
        assert_eq!(c.retry_throttling().unwrap().token_ratio, 0.25);
        let unary = c.method("/echo.Echo/Unary").unwrap();
        assert_eq!(unary.wait_for_ready, Some(true));
        assert_eq!(unary.timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            unary.retry_policy.as_ref().unwrap().initial_backoff,
            Duration::from_millis(50)
        );
        let stream = c.method("/echo.Echo/Stream").unwrap();
        // The exact entry replaces the service's entry; fields are not merged.
        assert_eq!(stream.wait_for_ready, None);
        assert_eq!(stream.timeout, None);
        assert_eq!(stream.max_request_message_bytes, Some(65536));
        assert_eq!(
            stream.hedging_policy.as_ref().unwrap().hedging_delay,
            Duration::from_millis(100)
        );
        assert!(stream.retry_policy.is_none());
        assert!(c.method("/other.Svc/M").is_none());
    }
}
