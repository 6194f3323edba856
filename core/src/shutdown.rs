//! The global cleanup ([`shutdown`], `rgrpc_shutdown` in C): everything
//! the library holds for the whole process goes, in an order that lets
//! every callback still due run first.
//!
//! 1. The runtime refuses new work from applications ([`rt::is_shut_down`]).
//! 2. Every live channel is closed: its calls end `CANCELLED` ("the library
//!    was shut down"), so threads blocked on them return, done callbacks and
//!    connectivity subscribers are called, ready futures complete.
//! 3. The callbacks that caused are waited for.
//! 4. The runtime stops: the background driver ends, the runtime is dropped
//!    (its tasks with it) and its threads are joined.
//! 5. The log sink (its destroy callback runs) and the pooled message
//!    buffers are freed.
//!
//! It is final: the runtime never starts again. Objects the application
//! still holds stay valid to free; using them fails with
//! [`RuntimeError::ShutDown`](crate::rt::RuntimeError::ShutDown).

#![forbid(unsafe_code)]

use crate::rt;
use crate::sync::lock;
use std::cell::Cell;
use std::sync::Mutex;

/// Why [`shutdown`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownError {
    /// Called on a thread of the library (from a callback) or inside a
    /// tokio runtime: it would wait for itself.
    OnLibraryThread,
}

impl std::fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShutdownError::OnLibraryThread => f.write_str(
                "shutdown cannot run on a thread of the library (from a callback) or inside \
                 a tokio runtime: it waits for those threads to end",
            ),
        }
    }
}

/// One shutdown at a time; a second caller waits for the first.
static SHUTTING: Mutex<()> = Mutex::new(());

thread_local! {
    /// True on the thread running [`shutdown`] (a destroy callback it runs
    /// may call it again).
    static IN_SHUTDOWN: Cell<bool> = const { Cell::new(false) };
}

/// Shuts the library down for good (see the module docs): closes every
/// channel, lets the callbacks that causes run, stops the runtime and joins
/// its threads, and frees the log sink and pooled buffers. Returns once all
/// of that is done. Calling it again does nothing and returns `Ok`.
///
/// Refused with [`ShutdownError::OnLibraryThread`] (and nothing happens)
/// on a library thread, inside a blocking call's callback, inside a tokio
/// runtime, or from a callback that this shutdown itself runs.
pub fn shutdown() -> Result<(), ShutdownError> {
    if rt::on_library_thread()
        || IN_SHUTDOWN.with(|s| s.get())
        || tokio::runtime::Handle::try_current().is_ok()
    {
        return Err(ShutdownError::OnLibraryThread);
    }
    let _one = lock(&SHUTTING);
    if !rt::begin_shutdown() {
        return Ok(());
    }
    IN_SHUTDOWN.with(|s| s.set(true));
    crate::channel::close_all();
    crate::completion::wait_idle();
    rt::stop();
    crate::log::set_sink(None);
    crate::codec::pool::clear();
    IN_SHUTDOWN.with(|s| s.set(false));
    Ok(())
}
