//! Runtime settings, and the global cleanup `rgrpc_shutdown`.

use super::boundary::boundary;
use super::error::rgrpc_result;
use rgrpc_core::rt::{self, RuntimeError};
use rgrpc_core::ShutdownError;
use std::ffi::CStr;

/// The reason recorded by a function refused after `rgrpc_shutdown`.
pub(crate) const SHUT_DOWN: &CStr =
    c"the library was shut down (rgrpc_shutdown); it cannot be used again";

/// True once `rgrpc_shutdown` has begun: functions that need the runtime
/// refuse with `RGRPC_RESULT_SHUTDOWN`. One atomic load.
#[inline]
pub(crate) fn shut_down() -> bool {
    rt::is_shut_down()
}

/// The code of an operation the runtime could not run:
/// `RGRPC_RESULT_SHUTDOWN` after `rgrpc_shutdown`, else
/// `RGRPC_RESULT_RUNTIME`.
pub(crate) fn runtime_failure() -> rgrpc_result {
    if shut_down() {
        rgrpc_result::Shutdown
    } else {
        rgrpc_result::Runtime
    }
}

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
/// 1024), `RGRPC_RESULT_ALREADY_STARTED` or `RGRPC_RESULT_SHUTDOWN` (after
/// `rgrpc_shutdown`). Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_runtime_set_worker_threads(threads: usize) -> rgrpc_result {
    boundary(|| match rt::set_worker_threads(threads) {
        Ok(()) => rgrpc_result::Ok,
        Err(RuntimeError::AlreadyStarted) => rgrpc_result::AlreadyStarted,
        Err(RuntimeError::InvalidWorkerCount(_)) => rgrpc_result::InvalidArgument,
        Err(RuntimeError::Start(_)) => rgrpc_result::Runtime,
        Err(RuntimeError::ShutDown) => rgrpc_result::Shutdown,
    })
}

/// Shuts the library down for good, like `curl_global_cleanup` or
/// `grpc_shutdown`: call it once at the end of the program, after the last
/// rgrpc call, so that nothing the library started outlives it (memory
/// checkers such as valgrind then report no block of the library, not even
/// "possibly lost" or "still reachable" ones of its threads). Optional: a
/// program that exits without it loses nothing but those reports.
///
/// In order, before it returns:
/// 1. Every channel still alive is closed (as `rgrpc_channel_close`): its
///    active calls end with CANCELLED ("channel closed: the library was
///    shut down"), so threads blocked on them return; done callbacks
///    (`rgrpc_call_on_done`, `rgrpc_call_unary_async`) run with that
///    status, subscribers (`rgrpc_channel_subscribe`) get SHUTDOWN, ready
///    futures complete with `RGRPC_RESULT_CHANNEL_CLOSED`.
/// 2. It waits for those callbacks to return (a callback that never
///    returns keeps it waiting).
/// 3. The runtime stops: its background tasks end, its threads
///    (`rgrpc-driver`, `rgrpc-worker`, `rgrpc-blocking`) are joined.
/// 4. What the library holds for the process is freed: the log callback
///    (its `destroy` runs, on this thread, unless a line is being written
///    with it on another), pooled message buffers. Names and other static
///    strings the library returned stay valid (they were never allocated).
///
/// Objects the application still holds (channels, calls, ready futures,
/// statuses, buffers, credentials, options, errors) stay valid: free them
/// as usual, before or after, with no leak. Reading them keeps working
/// (statuses, buffers, metadata, `rgrpc_call_last_error`,
/// `rgrpc_channel_get_state`, which is SHUTDOWN, `rgrpc_call_is_active`,
/// which is false, ...), and so do the cleanup functions
/// (`rgrpc_call_cancel`, `rgrpc_channel_close`,
/// `rgrpc_channel_unsubscribe`, `rgrpc_ready_future_cancel`, every
/// `_free`), the options and credentials builders, and
/// `rgrpc_log_set_trace` / `rgrpc_log_set_verbosity`. Everything that
/// needs the runtime is refused with `RGRPC_RESULT_SHUTDOWN` (the reason
/// in the object's last error): `rgrpc_channel_new`, starting calls,
/// send, receive, finish, wait, `rgrpc_call_on_done`,
/// `rgrpc_call_on_message`, subscriptions, `rgrpc_channel_wait_for_*`,
/// `rgrpc_channel_reset_connect_backoff`, ready futures and their waits,
/// `rgrpc_runtime_set_worker_threads`, `rgrpc_log_set_callback`.
///
/// Final: the library cannot be initialised again in this process (a
/// fresh runtime next to objects of the old one would be a trap); every
/// later use is refused as above.
///
/// Returns `RGRPC_RESULT_OK` (also when it was already shut down: a second
/// call does nothing), or `RGRPC_RESULT_RUNTIME` — and nothing happens —
/// when called where it would wait for itself: on a library thread (from
/// any callback the library runs there: done, message, connectivity,
/// ready future, call credentials plugin), from an inline or message
/// callback run on an application thread blocked in rgrpc, from the log
/// callback, from a destroy callback that this shutdown runs, or inside a
/// tokio runtime.
///
/// Threads: call it from an application thread when no other thread is
/// inside an rgrpc function and none will enter one (as
/// `curl_global_cleanup`). A thread still blocked in a call, a wait for
/// READY or a ready future's wait on a live channel is let go by step 1
/// (it returns as the call or wait ends); one blocked in a wait that the
/// closing does not end (a state change away from SHUTDOWN without a
/// timeout) keeps it waiting. A concurrent second `rgrpc_shutdown` waits
/// for the first and returns `RGRPC_RESULT_OK`.
#[no_mangle]
pub extern "C" fn rgrpc_shutdown() -> rgrpc_result {
    boundary(|| {
        if super::log::in_log_callback() {
            return rgrpc_result::Runtime;
        }
        match rgrpc_core::shutdown() {
            Ok(()) => rgrpc_result::Ok,
            Err(ShutdownError::OnLibraryThread) => rgrpc_result::Runtime,
        }
    })
}
