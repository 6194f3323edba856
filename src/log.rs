//! Logs and tracers from C: the tracers of `GRPC_TRACE`, the verbosity of
//! `GRPC_VERBOSITY`, and a callback that receives the lines instead of
//! stderr.

use super::boundary::boundary;
use super::callback::UserData;
use super::error::{rgrpc_error, rgrpc_result, set_error};
use super::handle::try_str;
use rgrpc_core::log::{self as core_log, Level};
use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

thread_local! {
    /// True while this thread runs the application's log callback.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// True while the current thread runs the log callback (where
/// `rgrpc_shutdown` is refused).
pub(crate) fn in_log_callback() -> bool {
    IN_CALLBACK.with(|c| c.get())
}

/// A log line's level, numbered as C-core's `gpr_log_severity`; `NONE`
/// (for `rgrpc_log_set_verbosity` only) writes no line without its tracer.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum rgrpc_log_level {
    Debug = 0,
    Info = 1,
    Error = 2,
    None = 3,
}

/// Receives each log line: its level, its tracer's name (`""` for a line
/// of no tracer) and the message, both NUL-terminated UTF-8 borrowed for
/// the call only. Called from any thread, possibly several at once; it
/// must not block for long (the thread may be driving the network).
pub type rgrpc_log_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: rgrpc_log_level,
        tracer: *const c_char,
        message: *const c_char,
    ),
>;

/// The C callback and its user data; the destroy callback runs when the
/// last line being written with it is done after it was replaced.
struct CSink {
    cb: unsafe extern "C" fn(*mut c_void, rgrpc_log_level, *const c_char, *const c_char),
    ud: UserData,
    destroy: crate::credentials::rgrpc_destroy_cb,
}

impl CSink {
    fn call(&self, level: rgrpc_log_level, tracer: &CString, msg: &CString) {
        let outer = IN_CALLBACK.with(|c| c.replace(true));
        // SAFETY: the caller's callback with its user data and two
        // NUL-terminated strings that live through the call.
        unsafe { (self.cb)(self.ud.0, level, tracer.as_ptr(), msg.as_ptr()) }
        IN_CALLBACK.with(|c| c.set(outer));
    }
}

impl Drop for CSink {
    fn drop(&mut self) {
        if let Some(d) = self.destroy {
            // SAFETY: the caller's destroy callback, given its own user data
            // once, after the last use of the callback.
            unsafe { d(self.ud.0) }
        }
    }
}

/// Sends every log line to `callback` instead of stderr (NULL: back to
/// stderr). Which lines: those of the tracers on (`GRPC_TRACE` or
/// `rgrpc_log_set_trace`) and those at or above the verbosity
/// (`GRPC_VERBOSITY` or `rgrpc_log_set_verbosity`; the default `NONE`
/// writes nothing else). `destroy` (may be NULL) is called once with
/// `user_data` when the callback is replaced or cleared and no line is
/// being written with it any more (possibly on another thread), or by
/// `rgrpc_shutdown`. The callback may call this function (the change
/// applies to later lines), not `rgrpc_shutdown`. Global to the process;
/// thread-safe. Returns `RGRPC_RESULT_OK`, or `RGRPC_RESULT_SHUTDOWN` after
/// `rgrpc_shutdown` (nothing is kept, `destroy` is not called).
#[no_mangle]
pub extern "C" fn rgrpc_log_set_callback(
    callback: rgrpc_log_cb,
    user_data: *mut c_void,
    destroy: crate::credentials::rgrpc_destroy_cb,
) -> rgrpc_result {
    boundary(|| {
        if crate::runtime::shut_down() {
            return rgrpc_result::Shutdown;
        }
        let sink: Option<core_log::Sink> = callback.map(|cb| {
            let s = CSink {
                cb,
                ud: UserData(user_data),
                destroy,
            };
            let sink: core_log::Sink = Arc::new(move |level: Level, tracer: &str, msg: &str| {
                let l = match level {
                    Level::Debug => rgrpc_log_level::Debug,
                    Level::Info => rgrpc_log_level::Info,
                    Level::Error => rgrpc_log_level::Error,
                };
                // Interior NULs cannot occur in our messages; replace to be safe.
                let t = CString::new(tracer.replace('\0', " ")).unwrap_or_default();
                let m = CString::new(msg.replace('\0', " ")).unwrap_or_default();
                s.call(l, &t, &m)
            });
            sink
        });
        core_log::set_sink(sink);
        rgrpc_result::Ok
    })
}

/// Turns tracers on or off as `GRPC_TRACE` does, over the ones on now:
/// comma-separated names, `all`, `-name` to turn one off, `none`. Tracers:
/// `api`, `connectivity_state`, `subchannel`, `resolver` (also
/// `dns_resolver`, `cares_resolver`), `pick_first`, `round_robin`, `http`
/// (frames received), `http_keepalive`, `call` (also `channel`),
/// `compression`, `retry`. An unknown name: `RGRPC_RESULT_INVALID_ARGUMENT`
/// with the known names in `*error_out` (when not NULL; free with
/// `rgrpc_error_free`), and nothing changes. Also
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_INVALID_UTF8`. Global to
/// the process; thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_log_set_trace(
    spec: *const c_char,
    error_out: *mut *mut rgrpc_error,
) -> rgrpc_result {
    boundary(|| {
        let spec = try_str!(spec);
        match core_log::set_trace(spec) {
            Ok(()) => rgrpc_result::Ok,
            Err(e) => set_error(error_out, rgrpc_result::InvalidArgument, &e),
        }
    })
}

/// Sets the least level of the lines written whatever their tracer
/// (`GRPC_VERBOSITY`): `RGRPC_LOG_LEVEL_DEBUG`, `_INFO` (channel state
/// changes, connections, resolutions, keepalive events), `_ERROR`, or
/// `_NONE` (the default: nothing but enabled tracers). Returns
/// `RGRPC_RESULT_OK`, or `RGRPC_RESULT_INVALID_ARGUMENT` for a number that
/// is no level. Global to the process; thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_log_set_verbosity(level: u32) -> rgrpc_result {
    boundary(|| {
        let l = match level {
            0 => Some(Level::Debug),
            1 => Some(Level::Info),
            2 => Some(Level::Error),
            3 => None,
            _ => return rgrpc_result::InvalidArgument,
        };
        core_log::set_verbosity(l);
        rgrpc_result::Ok
    })
}
