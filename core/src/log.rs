//! Logging and tracers, as C-core reads them: `GRPC_TRACE` (comma-separated
//! tracer names, `all`, `-name` to turn one off again) and `GRPC_VERBOSITY`
//! (`DEBUG`, `INFO`, `ERROR`, `NONE`; `RGRPC_TRACE` / `RGRPC_VERBOSITY` are
//! read when the `GRPC_` ones are unset). A line has a level and a tracer;
//! it is written when its tracer is on, or when its level is at least the
//! verbosity. The default verbosity is `NONE`, so nothing is written unless
//! asked for. Lines go to stderr, or to the sink set with [`set_sink`] (the C
//! ABI's log callback).
//!
//! Cost when nothing is on: [`on`] is one relaxed atomic load; the line is
//! formatted only when it will be written (the [`trace!`](crate::trace)
//! macro).

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

/// A line's severity, numbered as C-core's `gpr_log_severity`.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Error = 2,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Error => "ERROR",
        }
    }
}

/// The tracers: what each one shows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Tracer {
    /// Channels and calls made, closed and freed through the API.
    Api,
    /// The channel's connectivity state changes.
    ConnectivityState,
    /// Each subchannel's attempts, connections and their ends.
    Subchannel,
    /// Name resolution: each answer, each failure.
    Resolver,
    /// pick_first's passes, choices and failures.
    PickFirst,
    /// round_robin's subchannel list and aggregate state.
    RoundRobin,
    /// HTTP/2 frames received (type, flags, stream, length), GOAWAY.
    Http,
    /// Keepalive pings and their timeouts.
    HttpKeepalive,
    /// Each call's start and end (method, status, peer).
    Call,
    /// Messages compressed and decompressed.
    Compression,
    /// Retries and hedging (the retries work).
    Retry,
}

impl Tracer {
    /// Every tracer, in the order of its bit.
    pub const ALL: [Tracer; 11] = [
        Tracer::Api,
        Tracer::ConnectivityState,
        Tracer::Subchannel,
        Tracer::Resolver,
        Tracer::PickFirst,
        Tracer::RoundRobin,
        Tracer::Http,
        Tracer::HttpKeepalive,
        Tracer::Call,
        Tracer::Compression,
        Tracer::Retry,
    ];

    /// C-core's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Tracer::Api => "api",
            Tracer::ConnectivityState => "connectivity_state",
            Tracer::Subchannel => "subchannel",
            Tracer::Resolver => "resolver",
            Tracer::PickFirst => "pick_first",
            Tracer::RoundRobin => "round_robin",
            Tracer::Http => "http",
            Tracer::HttpKeepalive => "http_keepalive",
            Tracer::Call => "call",
            Tracer::Compression => "compression",
            Tracer::Retry => "retry",
        }
    }

    /// C-core's other names for the same tracer.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Tracer::Resolver => &["dns_resolver", "cares_resolver"],
            Tracer::Call => &["channel", "client_channel_call"],
            _ => &[],
        }
    }

    fn bit(self) -> u32 {
        1 << Tracer::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    /// The tracer called `name` (or one of its aliases).
    pub fn from_name(name: &str) -> Option<Tracer> {
        Tracer::ALL
            .iter()
            .copied()
            .find(|t| t.name() == name || t.aliases().contains(&name))
    }
}

/// Set once the environment has been read.
const INITIALIZED: u32 = 1 << 31;
/// Tracers on (bits of `Tracer::bit`), plus `INITIALIZED`.
static TRACERS: AtomicU32 = AtomicU32::new(0);
/// The least level written: 0 debug, 1 info, 2 error, 3 none.
static VERBOSITY: AtomicU32 = AtomicU32::new(3);

/// Receives the lines written: level, tracer name ("" for none), message.
pub type Sink = Arc<dyn Fn(Level, &str, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Reads `GRPC_TRACE` / `GRPC_VERBOSITY` (or the `RGRPC_` names) once.
#[cold]
fn init() -> u32 {
    let env = |a: &str, b: &str| std::env::var(a).or_else(|_| std::env::var(b)).ok();
    let mut bits = 0;
    let mut bad = Vec::new();
    if let Some(spec) = env("GRPC_TRACE", "RGRPC_TRACE") {
        match parse_trace(&spec, 0) {
            Ok(b) => bits = b,
            Err(e) => bad.push(e),
        }
    }
    if let Some(v) = env("GRPC_VERBOSITY", "RGRPC_VERBOSITY") {
        match parse_verbosity(&v) {
            Some(l) => VERBOSITY.store(l, Ordering::Relaxed),
            None => bad.push(format!(
                "GRPC_VERBOSITY={v:?} is not DEBUG, INFO, ERROR or NONE"
            )),
        }
    }
    let _ = TRACERS.compare_exchange(0, bits | INITIALIZED, Ordering::AcqRel, Ordering::Acquire);
    for e in bad {
        write(Level::Error, "", &e);
    }
    TRACERS.load(Ordering::Acquire)
}

fn tracers() -> u32 {
    let t = TRACERS.load(Ordering::Relaxed);
    if t & INITIALIZED != 0 {
        t
    } else {
        init()
    }
}

/// True when `t` is on. One atomic load.
#[inline]
pub fn on(t: Tracer) -> bool {
    tracers() & t.bit() != 0
}

/// True when lines of `level` are written whatever their tracer.
#[inline]
pub fn level_on(level: Level) -> bool {
    tracers();
    level as u32 >= VERBOSITY.load(Ordering::Relaxed)
}

/// Parses a `GRPC_TRACE` value applied over `bits`: `a,b,-c`, `all`,
/// `-all`, `none`. Unknown names are an error naming them.
fn parse_trace(spec: &str, mut bits: u32) -> Result<u32, String> {
    let all = Tracer::ALL.iter().fold(0, |b, t| b | t.bit());
    let mut unknown = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (off, name) = match item.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, item),
        };
        let b = match name {
            "all" => all,
            "none" => {
                bits = 0;
                continue;
            }
            n => match Tracer::from_name(n) {
                Some(t) => t.bit(),
                None => {
                    unknown.push(n.to_string());
                    continue;
                }
            },
        };
        if off {
            bits &= !b;
        } else {
            bits |= b;
        }
    }
    if unknown.is_empty() {
        Ok(bits)
    } else {
        Err(format!(
            "unknown tracer(s) {} in {spec:?} (known: {})",
            unknown.join(", "),
            Tracer::ALL.map(|t| t.name()).join(", ")
        ))
    }
}

fn parse_verbosity(v: &str) -> Option<u32> {
    match v.trim().to_ascii_uppercase().as_str() {
        "DEBUG" => Some(0),
        "INFO" => Some(1),
        "ERROR" => Some(2),
        "NONE" | "" => Some(3),
        _ => None,
    }
}

/// Turns tracers on or off as `GRPC_TRACE` does, over the current set
/// (`"all,-http"`, `"-call"`, `"none"`). Unknown names: an error, and
/// nothing changes.
pub fn set_trace(spec: &str) -> Result<(), String> {
    let cur = tracers() & !INITIALIZED;
    let bits = parse_trace(spec, cur)?;
    TRACERS.store(bits | INITIALIZED, Ordering::Release);
    Ok(())
}

/// Sets the verbosity (`None`: no line without its tracer on).
pub fn set_verbosity(level: Option<Level>) {
    tracers();
    VERBOSITY.store(level.map_or(3, |l| l as u32), Ordering::Relaxed);
}

/// Sends lines to `sink` instead of stderr (None: back to stderr). The
/// sink replaced is dropped here, outside the lock, unless a line is being
/// written with it (then by that line).
pub fn set_sink(sink: Option<Sink>) {
    let old = std::mem::replace(&mut *SINK.write().unwrap_or_else(|e| e.into_inner()), sink);
    drop(old);
}

/// Writes a line (already filtered).
#[cold]
pub fn write(level: Level, tracer: &str, msg: &str) {
    let sink = SINK.read().unwrap_or_else(|e| e.into_inner()).clone();
    match sink {
        Some(s) => s(level, tracer, msg),
        None if tracer.is_empty() => eprintln!("rgrpc {}: {msg}", level.name()),
        None => eprintln!("rgrpc {} [{tracer}]: {msg}", level.name()),
    }
}

/// Writes `msg()` when `tracer` is on or `level` is at least the verbosity.
#[inline]
pub fn emit(tracer: Tracer, level: Level, msg: impl FnOnce() -> String) {
    if on(tracer) || level_on(level) {
        write(level, tracer.name(), &msg());
    }
}

/// `trace!(Tracer::X, Level::Y, "format", args...)`: a line of that tracer
/// and level, formatted only when it is written.
#[macro_export]
#[doc(hidden)]
macro_rules! trace {
    ($tracer:expr, $level:expr, $($fmt:tt)+) => {
        $crate::log::emit($tracer, $level, || format!($($fmt)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_specs_parse_as_c_core_reads_them() {
        let all = Tracer::ALL.iter().fold(0, |b, t| b | t.bit());
        assert_eq!(parse_trace("all", 0), Ok(all));
        assert_eq!(parse_trace("all,-http", 0), Ok(all & !Tracer::Http.bit()));
        assert_eq!(
            parse_trace(" subchannel , dns_resolver ", 0),
            Ok(Tracer::Subchannel.bit() | Tracer::Resolver.bit())
        );
        assert_eq!(parse_trace("none", all), Ok(0));
        assert_eq!(parse_trace("-call", Tracer::Call.bit()), Ok(0));
        let e = parse_trace("api,bogus", 0).unwrap_err();
        assert!(e.contains("bogus") && e.contains("round_robin"), "{e}");
        assert_eq!(parse_verbosity("debug"), Some(0));
        assert_eq!(parse_verbosity("ERROR"), Some(2));
        assert_eq!(parse_verbosity("loud"), None);
    }
}
