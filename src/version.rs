//! `rgrpc_version()` and the monotonic clock used for absolute deadlines.

use super::boundary::boundary;
use std::ffi::c_char;

/// The version string, with the versions of the Rust crates that matter:
/// e.g. `"rgrpc/0.1.0 (h2/0.4.20 tokio/1.54.1 http/1.5.0)"`.
///
/// Returns a static string: never NULL, never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_version() -> *const c_char {
    boundary(|| {
        const V: &str = concat!(
            "rgrpc/",
            env!("CARGO_PKG_VERSION"),
            " (h2/",
            env!("RGRPC_DEP_H2"),
            " tokio/",
            env!("RGRPC_DEP_TOKIO"),
            " http/",
            env!("RGRPC_DEP_HTTP"),
            ")\0"
        );
        V.as_ptr() as *const c_char
    })
}

/// Milliseconds of `CLOCK_MONOTONIC`: the clock of absolute deadlines
/// (`rgrpc_call_options_set_deadline_ms`). Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_now_ms() -> i64 {
    boundary(monotonic_ms)
}

pub(crate) fn monotonic_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let (s, ns): (i64, i64) = (ts.tv_sec, ts.tv_nsec);
    s * 1000 + ns / 1_000_000
}
