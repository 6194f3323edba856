//! Runtime settings.

use super::boundary::boundary;
use super::error::rgrpc_result;
use crate::core::rt::{self, RuntimeError};

/// Sets the number of background worker threads of the library's runtime.
///
/// Must be called before the first call starts (the runtime starts then);
/// the environment variable `RGRPC_WORKER_THREADS` does the same without
/// code. Default: the number of CPUs, at most 4.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_INVALID_ARGUMENT` (0 or more
/// than 1024) or `RGRPC_RESULT_ALREADY_STARTED`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_runtime_set_worker_threads(threads: usize) -> rgrpc_result {
    boundary(|| match rt::set_worker_threads(threads) {
        Ok(()) => rgrpc_result::Ok,
        Err(RuntimeError::AlreadyStarted) => rgrpc_result::AlreadyStarted,
        Err(RuntimeError::InvalidWorkerCount(_)) => rgrpc_result::InvalidArgument,
        Err(RuntimeError::Start(_)) => rgrpc_result::Runtime,
    })
}
