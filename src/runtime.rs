//! Runtime settings.

use super::boundary::boundary;
use super::error::rgrpc_result;
use rgrpc_core::rt::{self, RuntimeError};

/// Chooses how the library's runtime uses threads. Must be called before
/// the first call starts (the runtime starts then); the environment
/// variable `RGRPC_WORKER_THREADS` does the same without code.
///
/// * `0` (the default): caller-driven. A thread blocked in an rgrpc
///   function does the network I/O of all channels itself while it waits
///   (no hand-off to another thread: lowest latency and CPU); one
///   background thread, `rgrpc-driver`, does it when no caller is blocked.
/// * `N` ≥ 1: N worker threads do all network I/O; blocked callers wait
///   for them (more parallelism for many busy connections).
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_INVALID_ARGUMENT` (more than
/// 1024) or `RGRPC_RESULT_ALREADY_STARTED`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_runtime_set_worker_threads(threads: usize) -> rgrpc_result {
    boundary(|| match rt::set_worker_threads(threads) {
        Ok(()) => rgrpc_result::Ok,
        Err(RuntimeError::AlreadyStarted) => rgrpc_result::AlreadyStarted,
        Err(RuntimeError::InvalidWorkerCount(_)) => rgrpc_result::InvalidArgument,
        Err(RuntimeError::Start(_)) => rgrpc_result::Runtime,
    })
}
