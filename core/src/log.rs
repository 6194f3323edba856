//! Logging: lines on stderr when `RGRPC_VERBOSITY=info` (or `debug`) is
//! set; silent otherwise. (The observability issue replaces this with
//! tracers and a log callback.)

#![forbid(unsafe_code)]

fn verbose() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        std::env::var("RGRPC_VERBOSITY")
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "debug" | "info"))
            .unwrap_or(false)
    })
}

/// Logs to stderr when `RGRPC_VERBOSITY=info` (or `debug`) is set; silent
/// otherwise.
pub(crate) fn log(msg: &str) {
    if verbose() {
        eprintln!("rgrpc: {msg}");
    }
}
