//! The unary helpers: `rgrpc_call_unary` (blocking), `rgrpc_call_unary_buffer`
//! (the request written in place) and `rgrpc_call_unary_async` (a callback).

use super::boundary::boundary;
use super::buffer::{self, rgrpc_buffer};
use super::call::{call_handle, give_status, rgrpc_call, start_error};
use super::call_options::{options_of, rgrpc_call_options};
use super::callback::UserData;
use super::channel::{rgrpc_channel, ChannelHandle};
use super::error::rgrpc_result;
use super::handle::{block, block_failure, bytes_arg, try_ref_or_null, write_out};
use super::runtime::{shut_down, SHUT_DOWN};
use super::status::rgrpc_status;
use bytes::Bytes;
use rgrpc_core::call::{StartError, UnaryOutcome};
use rgrpc_core::Status;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// Called once when a call started by `rgrpc_call_unary_async` ends.
///
/// `status` is borrowed for the callback's duration. `response`/
/// `response_len` hold the response when the status is OK (borrowed for
/// the callback's duration), otherwise NULL/0. Runs on a library thread
/// (or inline); same rules as `rgrpc_call_done_cb`.
pub type rgrpc_unary_done_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        status: *const rgrpc_status,
        response: *const u8,
        response_len: usize,
    ),
>;

/// Makes a unary call and blocks until it ends: the simple case in one
/// function.
///
/// `opts` may be NULL. `request`/`request_len` are copied (`request` may be
/// NULL when the length is 0).
///
/// Returns `RGRPC_RESULT_OK` when the RPC succeeded: `*response_out`
/// receives the response, owned by the caller (`rgrpc_buffer_free`).
/// Returns `RGRPC_RESULT_RPC_FAILED` when the RPC ended with a non-OK
/// status: `*response_out` is untouched. In both cases, when `status_out`
/// is not NULL, `*status_out` receives the status (owned:
/// `rgrpc_status_free`). Other results: `RGRPC_RESULT_NULL_PARAMETER`,
/// `RGRPC_RESULT_INVALID_UTF8`, `RGRPC_RESULT_INVALID_METHOD`,
/// `RGRPC_RESULT_CHANNEL_CLOSED`, `RGRPC_RESULT_RUNTIME`,
/// `RGRPC_RESULT_SHUTDOWN` (after `rgrpc_shutdown`). The reason of
/// every result but OK is `rgrpc_channel_last_error(channel)` (channel
/// not NULL). Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_unary(
    channel: *mut rgrpc_channel,
    method: *const c_char,
    opts: *const rgrpc_call_options,
    request: *const u8,
    request_len: usize,
    response_out: *mut *mut rgrpc_buffer,
    status_out: *mut *const rgrpc_status,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        let method = match ch.method_arg(method) {
            Ok(m) => m,
            Err(r) => return r,
        };
        if response_out.is_null() {
            return ch
                .last_error
                .fail(rgrpc_result::NullParameter, c"response_out is NULL");
        }
        // SAFETY: request is NULL or points to request_len readable bytes.
        let Some(req) = (unsafe { bytes_arg(request, request_len) }) else {
            return ch.last_error.fail(
                rgrpc_result::NullParameter,
                c"request is NULL but request_len is not 0",
            );
        };
        let o = options_of(opts);
        let r = block(ch.channel.unary(method, o, req));
        unary_result(ch, r, response_out, status_out)
    })
}

/// The result of a blocking unary call, with the response and status
/// written out as `rgrpc_call_unary` says. `response_out` is not NULL.
fn unary_result(
    ch: &ChannelHandle,
    r: Result<Result<UnaryOutcome, StartError>, rgrpc_result>,
    response_out: *mut *mut rgrpc_buffer,
    status_out: *mut *const rgrpc_status,
) -> rgrpc_result {
    match r {
        Ok(Ok((msg, st))) => {
            if let Some(m) = msg {
                write_out!(response_out, buffer::received(m));
            }
            give_status(st, status_out, &ch.last_error)
        }
        Ok(Err(e)) => start_error(ch, e),
        Err(r) => ch.last_error.fail(r, block_failure()),
    }
}

/// `rgrpc_call_unary` with the request in a buffer, which the call takes
/// (in every case, also on errors): one from `rgrpc_buffer_new` written in
/// place goes out without a copy; a received one is copied. Results,
/// out-parameters and messages as `rgrpc_call_unary`. Do not use `request`
/// afterwards.
#[no_mangle]
pub extern "C" fn rgrpc_call_unary_buffer(
    channel: *mut rgrpc_channel,
    method: *const c_char,
    opts: *const rgrpc_call_options,
    request: *mut rgrpc_buffer,
    response_out: *mut *mut rgrpc_buffer,
    status_out: *mut *const rgrpc_status,
) -> rgrpc_result {
    boundary(|| {
        let request = buffer::take(request);
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        let method = match ch.method_arg(method) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let Some(request) = request else {
            return ch
                .last_error
                .fail(rgrpc_result::NullParameter, c"request is NULL");
        };
        if response_out.is_null() {
            return ch
                .last_error
                .fail(rgrpc_result::NullParameter, c"response_out is NULL");
        }
        let o = options_of(opts);
        let r = request.with_message(|m| block(ch.channel.unary_message(method, o, m)));
        unary_result(ch, r, response_out, status_out)
    })
}

/// Starts a unary call that runs in the background (a future).
///
/// `cb` (may be NULL) runs once on a library thread when the call ends,
/// with the status and, on OK, the response (see `rgrpc_unary_done_cb`).
/// Without a callback the call completes with no hop to a callback thread:
/// the fastest way to wait for it is `rgrpc_call_wait` (which does the
/// call's I/O on the waiting thread), then `rgrpc_call_recv` and
/// `rgrpc_call_finish`.
/// When `call_out` is not NULL it receives the call (the application's
/// reference, released with `rgrpc_call_free`; see `rgrpc_call`): wait for
/// it with `rgrpc_call_wait(call, timeout_ms)`, cancel it with
/// `rgrpc_call_cancel`, read the response with `rgrpc_call_recv` and the
/// status with `rgrpc_call_finish` once it ended; freeing it while active
/// cancels the call. When `call_out` is NULL the call runs to its end on
/// its own.
///
/// Returns `RGRPC_RESULT_OK` (then `cb` will run exactly once),
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_INVALID_UTF8`,
/// `RGRPC_RESULT_INVALID_METHOD`, `RGRPC_RESULT_CHANNEL_CLOSED`,
/// `RGRPC_RESULT_RUNTIME`, `RGRPC_RESULT_SHUTDOWN` (after
/// `rgrpc_shutdown`) (then `cb` never runs); the reason of a failure
/// is `rgrpc_channel_last_error(channel)` (channel not NULL). Thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn rgrpc_call_unary_async(
    channel: *mut rgrpc_channel,
    method: *const c_char,
    opts: *const rgrpc_call_options,
    request: *const u8,
    request_len: usize,
    cb: rgrpc_unary_done_cb,
    user_data: *mut c_void,
    call_out: *mut *mut rgrpc_call,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        if shut_down() {
            return ch.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN);
        }
        let method = match ch.method_arg(method) {
            Ok(m) => m,
            Err(r) => return r,
        };
        // SAFETY: request is NULL or points to request_len readable bytes.
        let Some(req) = (unsafe { bytes_arg(request, request_len) }) else {
            return ch.last_error.fail(
                rgrpc_result::NullParameter,
                c"request is NULL but request_len is not 0",
            );
        };
        let ud = UserData(user_data);
        let done = cb.map(|f| {
            move |st: &Arc<Status>, resp: Option<&Bytes>| {
                let ud = ud;
                let (p, n) = resp.map_or((std::ptr::null(), 0), |b| (b.as_ptr(), b.len()));
                // SAFETY: f is the caller's callback; arguments are borrowed for the call.
                unsafe { f(ud.0, Arc::as_ptr(st) as *const rgrpc_status, p, n) }
            }
        });
        let o = options_of(opts);
        match ch
            .channel
            .unary_async_opt(method, o, Bytes::copy_from_slice(req), done)
        {
            Ok(call) => {
                if call_out.is_null() {
                    call.detach();
                } else {
                    write_out!(call_out, call_handle(call));
                }
                rgrpc_result::Ok
            }
            Err(e) => start_error(ch, e),
        }
    })
}
