//! `rgrpc_call`: the call object (all four RPC patterns), its send flags
//! and callbacks. Per-call options are in `call_options.rs`, the unary
//! helpers in `unary.rs`.

use super::boundary::boundary;
use super::buffer::{self, rgrpc_buffer};
use super::call_options::{options_of, rgrpc_call_options};
use super::callback::UserData;
use super::channel::{rgrpc_channel, ChannelHandle};
use super::error::{rgrpc_result, LastError, Text};
use super::handle::{
    block, block_failure, bytes_arg, clone_arc, take_arc, to_arc, try_arc_or_null, try_ref,
    try_ref_or_null, with_timeout, write_out, Castable,
};
use super::metadata::rgrpc_metadata;
use super::runtime::{runtime_failure, shut_down, SHUT_DOWN};
use super::status::rgrpc_status;
use bytes::Bytes;
use rgrpc_core::call::StartError;
use rgrpc_core::{Call, CallError, Metadata, SendFlags, Status};
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `rgrpc_call_send` flag: half-close after this message (as if
/// `rgrpc_call_close_send` followed; saves a frame).
pub const RGRPC_SEND_LAST: u32 = 1;
/// `rgrpc_call_send` flag: send this message uncompressed even when the
/// call compresses (the CRIME/BEAST mitigation of the gRPC compression
/// spec: use it for messages mixing secrets with attacker-chosen data).
pub const RGRPC_SEND_NO_COMPRESS: u32 = 2;
/// `rgrpc_call_send` flag: the message may wait in the call's send buffer
/// (up to 64 KiB) and leave together with later messages: it is written by
/// the next send without this flag, by `rgrpc_call_close_send` (or
/// `RGRPC_SEND_LAST`), or when the buffer fills. Streams of many small
/// messages then cost one system call per 64 KiB instead of one per
/// message (gRPC's buffer hint; C-core's `GRPC_WRITE_BUFFER_HINT`). Do not
/// set it on a message the server must see before it answers.
pub const RGRPC_SEND_BUFFER_HINT: u32 = 4;

/// Message compression algorithms (numbered as C-core's
/// `grpc_compression_algorithm`). Functions take them as `uint32_t`.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum rgrpc_compression {
    /// No compression.
    None = 0,
    /// zlib format, called "deflate" in gRPC.
    Deflate = 1,
    /// gzip.
    Gzip = 2,
}

/// Called once when a call ends.
///
/// `user_data` is the pointer given at registration. `status` is borrowed
/// for the duration of the callback (call `rgrpc_status_get_code` etc.; do
/// not free it).
///
/// Runs on a library thread. It must not unwind (no C++ exceptions, no
/// longjmp out of it) and should not block for long. It may call any
/// rgrpc function, including `rgrpc_call_free` on the call it is for.
/// With `rgrpc_call_options_set_inline_callbacks` it runs on the thread
/// driving the network I/O instead, and must not block at all.
pub type rgrpc_call_done_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, status: *const rgrpc_status)>;

/// Called for each received message of a call in push mode
/// (`rgrpc_call_on_message`).
///
/// `data`/`len` are borrowed for the duration of the callback (copy what
/// you keep). Runs one message at a time, in order, on a thread that is
/// driving the library's network I/O (a library thread, or a caller
/// blocked in rgrpc). It must not unwind and must not call blocking rgrpc
/// functions (send, recv, finish, unary, wait...: they return
/// `RGRPC_RESULT_RUNTIME`); non-blocking ones such as `rgrpc_call_cancel`
/// and `rgrpc_call_free` of its call (which cancels it) are fine. Keep it
/// short: network I/O waits for it.
pub type rgrpc_message_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, data: *const u8, len: usize)>;

/// One RPC. All four patterns are this object used differently:
///
/// 1. `rgrpc_call_start(channel, "/pkg.Service/Method", opts, &call)`.
/// 2. Send requests with `rgrpc_call_send` (unary / server streaming: one
///    message with `RGRPC_SEND_LAST`; client / bidi streaming: many), then
///    `rgrpc_call_close_send`.
/// 3. Read responses with `rgrpc_call_recv` until it returns
///    `RGRPC_RESULT_END_OF_STREAM` (or take them in push mode with
///    `rgrpc_call_on_message`).
/// 4. `rgrpc_call_finish(call, &status)` for the final status; free it with
///    `rgrpc_status_free`; free the call with `rgrpc_call_free`.
///
/// Blocking functions (`send`, `close_send`, `recv`, `finish`,
/// `initial_metadata`, `wait`) run the call's I/O on the calling thread and
/// return early when the call ends (deadline, cancel, channel close, free).
///
/// Thread rules: every function may be called from any thread. One thread
/// may send while another receives; a second concurrent sender or receiver
/// gets `RGRPC_RESULT_BUSY` (`rgrpc_call_finish` and
/// `rgrpc_call_initial_metadata` beside a receiver wait for it instead).
/// `rgrpc_call_cancel`, `rgrpc_call_is_active` and
/// `rgrpc_call_time_remaining_ms` are safe from any thread at any time.
///
/// Lifetime: the handle is reference-counted (an `Arc` to shared state).
/// The application owns one reference, from `rgrpc_call_start` (or
/// `rgrpc_call_unary_async`) until `rgrpc_call_free`; every function
/// working on the call takes its own reference for as long as it runs.
/// `rgrpc_call_free` releases the application's reference and cancels the
/// call if it is still active, so threads blocked in it (send, close_send,
/// recv, finish, initial_metadata, wait) return promptly, each with the
/// result its doc gives for a cancelled call; the memory goes when the last
/// of them returns. So it is safe to free the call while another thread is
/// inside a function on it that it entered before the free (typically:
/// blocked in it). A function called on the handle at the same time as or
/// after `rgrpc_call_free` is a use after free (undefined), as is a second
/// free; a thread whose function returned because of the free must not use
/// the handle again. Borrowed results (`rgrpc_call_initial_metadata`,
/// `rgrpc_call_response_encoding`, `rgrpc_call_peer`, `rgrpc_call_last_error`) are valid until
/// `rgrpc_call_free`. Callbacks and the library's tasks keep what they need
/// alive on their own.
///
/// Errors: a function that fails leaves a message saying why, read with
/// `rgrpc_call_last_error(call)` from the same thread.
///
/// Methods: `rgrpc_call_start`, `rgrpc_call_send`, `rgrpc_call_send_buffer`,
/// `rgrpc_call_close_send`, `rgrpc_call_recv`, `rgrpc_call_finish`,
/// `rgrpc_call_initial_metadata`, `rgrpc_call_is_active`,
/// `rgrpc_call_time_remaining_ms`, `rgrpc_call_cancel`, `rgrpc_call_wait`,
/// `rgrpc_call_on_done`, `rgrpc_call_on_message`,
/// `rgrpc_call_response_encoding`, `rgrpc_call_peer`, `rgrpc_call_get_stats`,
/// `rgrpc_call_last_error`,
/// `rgrpc_call_free`, `rgrpc_call_unary`, `rgrpc_call_unary_buffer`,
/// `rgrpc_call_unary_async`; with a completion queue (each completes into
/// the queue with a tag instead of blocking; see the queue's doc):
/// `rgrpc_call_start_cq`, `rgrpc_call_send_cq`, `rgrpc_call_send_buffer_cq`,
/// `rgrpc_call_close_send_cq`, `rgrpc_call_recv_cq`,
/// `rgrpc_call_initial_metadata_cq`, `rgrpc_call_finish_cq`,
/// `rgrpc_call_unary_cq`.
pub struct rgrpc_call {
    _private: [u8; 0],
}

/// What an `rgrpc_call` handle points to (through an `Arc`).
pub(crate) struct CallHandle {
    call: Call,
    /// Set by `rgrpc_call_free`: the application's reference is gone, so
    /// nothing borrowed from the call may be handed out any more.
    freed: AtomicBool,
    pub(crate) last_error: LastError,
    /// A send-side operation of a completion queue is in progress.
    cq_sending: AtomicBool,
    /// A receive of a completion queue is in progress.
    cq_receiving: AtomicBool,
}

impl Castable for rgrpc_call {
    type Rust = CallHandle;
}

/// A new call handle holding the application's reference.
pub(crate) fn call_handle(call: Call) -> *mut rgrpc_call {
    to_arc::<rgrpc_call>(Arc::new(CallHandle {
        call,
        freed: AtomicBool::new(false),
        last_error: LastError::default(),
        cq_sending: AtomicBool::new(false),
        cq_receiving: AtomicBool::new(false),
    })) as *mut rgrpc_call
}

impl CallHandle {
    /// The call.
    pub(crate) fn call(&self) -> &Call {
        &self.call
    }

    /// The flag of a completion queue operation in progress on one side.
    pub(crate) fn cq_side(&self, send: bool) -> &AtomicBool {
        if send {
            &self.cq_sending
        } else {
            &self.cq_receiving
        }
    }

    /// Records why `e` happened and returns its result code.
    fn call_error(&self, e: CallError) -> rgrpc_result {
        let r = super::queue::call_error_code(&e);
        let text = match (&e, self.call.status()) {
            (CallError::Ended, Some(st)) => format!("{e} ({})", status_text(&st)),
            _ => e.to_string(),
        };
        self.last_error.fail(r, text)
    }

    /// Runs `f` on this thread (`block`), recording why it cannot.
    /// Inlined, as `block`: the future is not copied once more.
    #[inline(always)]
    fn block<F: std::future::Future>(&self, f: F) -> Result<F::Output, rgrpc_result> {
        block(f).map_err(|r| self.last_error.fail(r, block_failure()))
    }
}

/// `status CODE: details` for messages.
pub(crate) fn status_text(st: &Status) -> String {
    let code = rgrpc_core::Code::name(st.code());
    match st.message() {
        "" => format!("status {code}"),
        m => format!("status {code}: {m}"),
    }
}

/// Records why a call could not start on `ch` and returns its result code.
pub(crate) fn start_error(ch: &ChannelHandle, e: StartError) -> rgrpc_result {
    let r = match e {
        StartError::ChannelClosed => rgrpc_result::ChannelClosed,
        StartError::InvalidMethod(_) => rgrpc_result::InvalidMethod,
        StartError::Runtime(_) => runtime_failure(),
    };
    ch.last_error.fail(r, e.to_string())
}

/// Starts a call of `method` (`"/package.Service/Method"`) on `channel`.
/// Returns at once: the stream is opened (connecting if needed) by the
/// first operation. The deadline clock starts now.
///
/// `opts` may be NULL (defaults); it is copied. On success writes the call
/// to `*call_out`: the application's reference, released with
/// `rgrpc_call_free` (see `rgrpc_call` for lifetimes and threads).
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER`,
/// `RGRPC_RESULT_INVALID_UTF8`, `RGRPC_RESULT_INVALID_METHOD`,
/// `RGRPC_RESULT_CHANNEL_CLOSED`, `RGRPC_RESULT_RUNTIME` or
/// `RGRPC_RESULT_SHUTDOWN` (after `rgrpc_shutdown`); on failure (channel
/// not NULL) the reason is `rgrpc_channel_last_error(channel)`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_start(
    channel: *mut rgrpc_channel,
    method: *const c_char,
    opts: *const rgrpc_call_options,
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
        if call_out.is_null() {
            return ch
                .last_error
                .fail(rgrpc_result::NullParameter, c"call_out is NULL");
        }
        crate::channel::api_trace(|| format!("rgrpc_call_start({method})"));
        match ch.channel.start_call(method, options_of(opts)) {
            Ok(call) => {
                write_out!(call_out, call_handle(call));
                rgrpc_result::Ok
            }
            Err(e) => start_error(ch, e),
        }
    })
}

/// Sends one message (`data`/`len`, copied; `data` may be NULL when `len`
/// is 0). Blocks while HTTP/2 flow control leaves no room (at most one
/// message is buffered). `flags`: 0, or any of `RGRPC_SEND_LAST` to
/// half-close after it, `RGRPC_SEND_NO_COMPRESS`, `RGRPC_SEND_BUFFER_HINT`
/// to let it wait for later messages (one write for many small ones).
///
/// Returns `RGRPC_RESULT_OK`; `RGRPC_RESULT_CALL_ENDED` when the call has
/// ended or the server closed the stream (`rgrpc_call_finish` says why; a
/// message above `grpc.max_send_message_length` ends the call with
/// RESOURCE_EXHAUSTED), also when it was cancelled or freed while this
/// waited; `RGRPC_RESULT_SEND_CLOSED`; `RGRPC_RESULT_BUSY` (another thread
/// is sending); `RGRPC_RESULT_NULL_PARAMETER`;
/// `RGRPC_RESULT_INVALID_ARGUMENT` (unknown flag bits);
/// `RGRPC_RESULT_RUNTIME`; `RGRPC_RESULT_SHUTDOWN` (after
/// `rgrpc_shutdown`). The reason of a failure is
/// `rgrpc_call_last_error(call)`. Holds its own reference to the call
/// while it runs (see `rgrpc_call`).
#[no_mangle]
pub extern "C" fn rgrpc_call_send(
    call: *mut rgrpc_call,
    data: *const u8,
    len: usize,
    flags: u32,
) -> rgrpc_result {
    boundary(|| {
        let c = try_arc_or_null!(rgrpc_call, call);
        let f = match send_flags(flags) {
            Ok(f) => f,
            Err(text) => return c.last_error.fail(rgrpc_result::InvalidArgument, text),
        };
        // SAFETY: data is NULL or points to len readable bytes.
        let Some(msg) = (unsafe { bytes_arg(data, len) }) else {
            return c.last_error.fail(
                rgrpc_result::NullParameter,
                c"data is NULL but len is not 0",
            );
        };
        send_result(&c, c.block(c.call.send(msg, f)))
    })
}

fn send_result(c: &CallHandle, r: Result<Result<(), CallError>, rgrpc_result>) -> rgrpc_result {
    match r {
        Ok(Ok(())) => rgrpc_result::Ok,
        Ok(Err(e)) => c.call_error(e),
        Err(r) => r,
    }
}

/// Sends a message in a buffer, which the call takes (in every case, also
/// on errors): one from `rgrpc_buffer_new` written in place goes out
/// without a copy; a received one is copied. Otherwise as
/// `rgrpc_call_send` (blocking, flags, results, last error, reference).
/// Do not use `msg` after this call.
#[no_mangle]
pub extern "C" fn rgrpc_call_send_buffer(
    call: *mut rgrpc_call,
    msg: *mut rgrpc_buffer,
    flags: u32,
) -> rgrpc_result {
    boundary(|| {
        let msg = buffer::take(msg);
        let c = try_arc_or_null!(rgrpc_call, call);
        let f = match send_flags(flags) {
            Ok(f) => f,
            Err(text) => return c.last_error.fail(rgrpc_result::InvalidArgument, text),
        };
        let Some(msg) = msg else {
            return c
                .last_error
                .fail(rgrpc_result::NullParameter, c"msg is NULL");
        };
        send_result(&c, msg.with_message(|m| c.block(c.call.send_message(m, f))))
    })
}

/// The send flags, or why they are refused (unknown bits).
pub(crate) fn send_flags(flags: u32) -> Result<SendFlags, String> {
    let known = RGRPC_SEND_LAST | RGRPC_SEND_NO_COMPRESS | RGRPC_SEND_BUFFER_HINT;
    if flags & !known != 0 {
        return Err(format!(
            "unknown send flag bits {:#x} (known: RGRPC_SEND_LAST, RGRPC_SEND_NO_COMPRESS, RGRPC_SEND_BUFFER_HINT)",
            flags & !known
        ));
    }
    Ok(SendFlags {
        last: flags & RGRPC_SEND_LAST != 0,
        no_compress: flags & RGRPC_SEND_NO_COMPRESS != 0,
        buffer_hint: flags & RGRPC_SEND_BUFFER_HINT != 0,
    })
}

/// Half-closes the call: no more messages will be sent. Idempotent.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_CALL_ENDED` (also when the
/// call was cancelled or freed while this waited), `RGRPC_RESULT_BUSY`,
/// `RGRPC_RESULT_RUNTIME`, `RGRPC_RESULT_SHUTDOWN` or `RGRPC_RESULT_NULL_PARAMETER`; the reason of
/// a failure is `rgrpc_call_last_error(call)`. Holds its own reference to
/// the call while it runs.
#[no_mangle]
pub extern "C" fn rgrpc_call_close_send(call: *mut rgrpc_call) -> rgrpc_result {
    boundary(|| {
        let c = try_arc_or_null!(rgrpc_call, call);
        send_result(&c, c.block(c.call.close_send()))
    })
}

/// Receives the next message, blocking until it arrives.
///
/// On `RGRPC_RESULT_OK` writes a buffer to `*msg_out`, owned by the caller
/// (`rgrpc_buffer_free`). `RGRPC_RESULT_END_OF_STREAM`: no more messages —
/// the server finished, or the call failed, was cancelled or freed while
/// this waited; `rgrpc_call_finish` gives the status. Also
/// `RGRPC_RESULT_BUSY` (another thread is receiving, or a message callback
/// is set), `RGRPC_RESULT_RUNTIME`, `RGRPC_RESULT_SHUTDOWN` and `RGRPC_RESULT_NULL_PARAMETER`.
/// `rgrpc_call_last_error(call)` says why for every result but OK. Holds
/// its own reference to the call while it runs.
#[no_mangle]
pub extern "C" fn rgrpc_call_recv(
    call: *mut rgrpc_call,
    msg_out: *mut *mut rgrpc_buffer,
) -> rgrpc_result {
    boundary(|| {
        let c = try_arc_or_null!(rgrpc_call, call);
        if msg_out.is_null() {
            return c
                .last_error
                .fail(rgrpc_result::NullParameter, c"msg_out is NULL");
        }
        match c.block(c.call.recv()) {
            Ok(Ok(Some(b))) => {
                write_out!(msg_out, buffer::received(b));
                rgrpc_result::Ok
            }
            Ok(Ok(None)) => {
                let text: Text = match c.call.status() {
                    Some(st) if !st.is_ok() => {
                        format!("no more messages: the call ended with {}", status_text(&st)).into()
                    }
                    _ => c"no more messages: the server ended the response stream".into(),
                };
                c.last_error.fail(rgrpc_result::EndOfStream, text)
            }
            Ok(Err(e)) => c.call_error(e),
            Err(r) => r,
        }
    })
}

/// Hands the final status out (when `status_out` is not NULL) and returns
/// OK, or RPC_FAILED with the status as the reason in `last_error`.
pub(crate) fn give_status(
    st: Arc<Status>,
    status_out: *mut *const rgrpc_status,
    last_error: &LastError,
) -> rgrpc_result {
    let result = if st.is_ok() {
        rgrpc_result::Ok
    } else {
        last_error.fail(
            rgrpc_result::RpcFailed,
            format!("the RPC ended with {}", status_text(&st)),
        )
    };
    if !status_out.is_null() {
        write_out!(status_out, to_arc::<rgrpc_status>(st));
    }
    result
}

/// Waits for the call's final status. Unread messages are discarded. For
/// streaming requests, call `rgrpc_call_close_send` first, or the server
/// may wait for more.
///
/// Returns `RGRPC_RESULT_OK` when the status is OK and
/// `RGRPC_RESULT_RPC_FAILED` when it is not (CANCELLED when the call was
/// cancelled or freed while this waited); in both cases, when `status_out`
/// is not NULL, `*status_out` receives the status, owned by the caller
/// (`rgrpc_status_free`; it stays valid after `rgrpc_call_free`). Also
/// `RGRPC_RESULT_RUNTIME`, `RGRPC_RESULT_SHUTDOWN` and `RGRPC_RESULT_NULL_PARAMETER`; the reason of
/// every result but OK is `rgrpc_call_last_error(call)`. May be called
/// again (returns the same status). Holds its own reference to the call
/// while it runs.
#[no_mangle]
pub extern "C" fn rgrpc_call_finish(
    call: *mut rgrpc_call,
    status_out: *mut *const rgrpc_status,
) -> rgrpc_result {
    boundary(|| {
        let c = try_arc_or_null!(rgrpc_call, call);
        match c.block(c.call.finish()) {
            Ok(Ok(st)) => give_status(st, status_out, &c.last_error),
            Ok(Err(e)) => c.call_error(e),
            Err(r) => r,
        }
    })
}

/// Waits for the server's initial metadata (response headers) and writes a
/// borrowed view to `*md_out`, valid until `rgrpc_call_free`; do not free.
/// Empty when the call ended without headers (e.g. a Trailers-Only error,
/// or a cancel).
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_CANCELLED` (the call was freed
/// while this waited: nothing is written, as the view would not outlive
/// the call), `RGRPC_RESULT_RUNTIME`, `RGRPC_RESULT_SHUTDOWN` or `RGRPC_RESULT_NULL_PARAMETER`; the
/// reason of a failure is `rgrpc_call_last_error(call)`. Holds its own
/// reference to the call while it runs.
#[no_mangle]
pub extern "C" fn rgrpc_call_initial_metadata(
    call: *mut rgrpc_call,
    md_out: *mut *const rgrpc_metadata,
) -> rgrpc_result {
    boundary(|| {
        let c = try_arc_or_null!(rgrpc_call, call);
        if md_out.is_null() {
            return c
                .last_error
                .fail(rgrpc_result::NullParameter, c"md_out is NULL");
        }
        // Already in (or the call ended): no need to enter the runtime.
        if let Some(md) = c.call.initial_metadata_now() {
            write_out!(md_out, md as *const Metadata as *const rgrpc_metadata);
            return rgrpc_result::Ok;
        }
        match c.block(c.call.initial_metadata()) {
            Ok(Ok(_)) if c.freed.load(Ordering::Acquire) => c.last_error.fail(
                rgrpc_result::Cancelled,
                c"the call was freed while waiting for its initial metadata",
            ),
            Ok(Ok(md)) => {
                write_out!(md_out, md as *const Metadata as *const rgrpc_metadata);
                rgrpc_result::Ok
            }
            Ok(Err(e)) => c.call_error(e),
            Err(r) => r,
        }
    })
}

/// True while the call has not ended; false for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_is_active(call: *const rgrpc_call) -> bool {
    boundary(|| {
        // SAFETY: call is NULL or a live call.
        unsafe { clone_arc::<rgrpc_call>(call) }.is_some_and(|c| c.call.is_active())
    })
}

/// Milliseconds left before the call's deadline: -1 when it has none (or
/// for NULL), 0 once passed. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_time_remaining_ms(call: *const rgrpc_call) -> i64 {
    boundary(|| {
        // SAFETY: call is NULL or a live call.
        match unsafe { clone_arc::<rgrpc_call>(call) }.and_then(|c| c.call.time_remaining()) {
            Some(d) => d.as_millis().min(i64::MAX as u128) as i64,
            None => -1,
        }
    })
}

/// Cancels the call: it ends with CANCELLED (DEADLINE_EXCEEDED if its
/// deadline has passed), the server is told (RST_STREAM CANCEL) and
/// blocked operations return. Idempotent; no effect on an ended call.
/// Safe from any thread at any time, including concurrently with blocked
/// operations on the call. Returns `RGRPC_RESULT_OK` or
/// `RGRPC_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub extern "C" fn rgrpc_call_cancel(call: *mut rgrpc_call) -> rgrpc_result {
    boundary(|| {
        let c = try_arc_or_null!(rgrpc_call, call);
        c.call.cancel();
        rgrpc_result::Ok
    })
}

/// Waits until the call has ended and its done callback (if any) has
/// returned. `timeout_ms` < 0 waits without limit.
///
/// Note: a streaming call ends only when its status is known, which needs
/// its messages to be read (or a deadline, cancel, free or channel close).
///
/// Returns `RGRPC_RESULT_OK` (also when the call ended because it was
/// cancelled or freed while this waited), `RGRPC_RESULT_TIMEOUT`,
/// `RGRPC_RESULT_RUNTIME`, `RGRPC_RESULT_SHUTDOWN` or `RGRPC_RESULT_NULL_PARAMETER`; the reason of
/// a failure is `rgrpc_call_last_error(call)`. Thread-safe; holds its own
/// reference to the call while it runs.
#[no_mangle]
pub extern "C" fn rgrpc_call_wait(call: *mut rgrpc_call, timeout_ms: i64) -> rgrpc_result {
    boundary(|| {
        let c = try_arc_or_null!(rgrpc_call, call);
        match c.block(with_timeout(timeout_ms, c.call.wait())) {
            Ok(Some(())) => rgrpc_result::Ok,
            Ok(None) => c.last_error.fail(
                rgrpc_result::Timeout,
                format!("the call did not end within {timeout_ms} ms"),
            ),
            Err(r) => r,
        }
    })
}

/// Registers `cb` to run once when the call ends, like grpcio's
/// `add_callback`. One or more callbacks may be registered; they run in
/// order on a library thread (see `rgrpc_call_done_cb`), also when the
/// call ends because it was freed.
///
/// Returns `RGRPC_RESULT_OK` (registered), `RGRPC_RESULT_CALL_ENDED` (the
/// call has already ended: `cb` is not registered and will not run),
/// `RGRPC_RESULT_NULL_PARAMETER` (call or cb NULL),
/// `RGRPC_RESULT_SHUTDOWN` (after `rgrpc_shutdown`; not registered); the
/// reason of a failure is `rgrpc_call_last_error(call)`.
#[no_mangle]
pub extern "C" fn rgrpc_call_on_done(
    call: *mut rgrpc_call,
    cb: rgrpc_call_done_cb,
    user_data: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        let c = try_arc_or_null!(rgrpc_call, call);
        let Some(f) = cb else {
            return c
                .last_error
                .fail(rgrpc_result::NullParameter, c"cb is NULL");
        };
        if shut_down() {
            return c.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN);
        }
        let ud = UserData(user_data);
        let r = c.call.on_done(Box::new(move |st: &Arc<Status>| {
            let ud = ud;
            // SAFETY: f is the caller's callback; status is borrowed for the call.
            unsafe { f(ud.0, Arc::as_ptr(st) as *const rgrpc_status) }
        }));
        match r {
            Ok(()) => rgrpc_result::Ok,
            Err(_) => c.call_error(CallError::Ended),
        }
    })
}

/// Switches the call to push mode: every received message is passed to
/// `cb` on a library thread, in order; afterwards the call ends as usual
/// and done callbacks run after the last message. `rgrpc_call_recv` then
/// returns `RGRPC_RESULT_BUSY`. Send and close as usual.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_BUSY` (already in push mode),
/// `RGRPC_RESULT_NULL_PARAMETER` (call or cb NULL), `RGRPC_RESULT_RUNTIME`
/// or `RGRPC_RESULT_SHUTDOWN`; the reason of a failure is
/// `rgrpc_call_last_error(call)`.
#[no_mangle]
pub extern "C" fn rgrpc_call_on_message(
    call: *mut rgrpc_call,
    cb: rgrpc_message_cb,
    user_data: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        let c = try_arc_or_null!(rgrpc_call, call);
        let Some(f) = cb else {
            return c
                .last_error
                .fail(rgrpc_result::NullParameter, c"cb is NULL");
        };
        if shut_down() {
            return c.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN);
        }
        let ud = UserData(user_data);
        let r = c.call.on_message(move |m: Bytes| {
            let ud = ud;
            // SAFETY: f is the caller's callback; data is borrowed for the call.
            unsafe { f(ud.0, m.as_ptr(), m.len()) }
        });
        match r {
            Ok(()) => rgrpc_result::Ok,
            Err(e) => c.call_error(e),
        }
    })
}

/// The compression the server used for its messages: the response's
/// `grpc-encoding` (`"identity"` when it sent none), NUL-terminated,
/// valid until `rgrpc_call_free`. NULL until the response headers have
/// arrived (after `rgrpc_call_initial_metadata` or a first message), and
/// for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_response_encoding(call: *const rgrpc_call) -> *const c_char {
    boundary(|| {
        // SAFETY: call is NULL or a live call; the string lives in the
        // call, which the application's reference keeps until its free.
        match unsafe { try_ref::<rgrpc_call>(call) }
            .and_then(|c| c.call.response_encoding_with_nul())
        {
            Some(s) => crate::names::lend_nul_terminated(s),
            None => std::ptr::null(),
        }
    })
}

/// The address the call went to, as C-core's `grpc_call_get_peer` writes
/// it: `"ipv4:127.0.0.1:50051"`, `"ipv6:[::1]:50051"`, `"unix:/path"`,
/// `"unix-abstract:name"` (with a load-balancing policy such as
/// round_robin, the server this call was sent to). NUL-terminated UTF-8,
/// borrowed: valid until `rgrpc_call_free`; do not free. NULL until the
/// call's stream has been opened (its first send, or the start of a unary
/// helper call), and for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_peer(call: *const rgrpc_call) -> *const c_char {
    boundary(|| {
        // SAFETY: call is NULL or a live call; the string lives in the
        // call, which the application's reference keeps until its free.
        match unsafe { try_ref::<rgrpc_call>(call) }.and_then(|c| c.call.peer_with_nul()) {
            Some(s) => crate::names::lend_nul_terminated(s),
            None => std::ptr::null(),
        }
    })
}

/// A call's statistics (`rgrpc_call_get_stats`). Times are microseconds
/// from the start of the call, -1 when not reached yet.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct rgrpc_call_stats {
    /// HTTP/2 streams opened for the call (1 once sent; more with retries).
    pub attempts: u32,
    /// 1 once the call has ended (the figures are final), else 0.
    pub ended: u32,
    /// Messages handed to the call to send, and their bytes.
    pub messages_sent: u64,
    pub bytes_sent: u64,
    /// The same in gRPC frames on the wire (5-byte prefix included,
    /// compressed when the message was).
    pub wire_bytes_sent: u64,
    /// Messages received, and their bytes after decompression.
    pub messages_received: u64,
    pub bytes_received: u64,
    /// The received gRPC frames' bytes, as they came.
    pub wire_bytes_received: u64,
    /// Until a connection was picked for the call.
    pub pick_wait_us: i64,
    /// Until the response headers arrived.
    pub first_response_us: i64,
    /// Until the call ended (until now while it runs).
    pub total_us: i64,
    /// Retries made by the service config's `retryPolicy` (each an attempt
    /// counted against its `maxAttempts`), and hedged attempts beyond the
    /// first under a `hedgingPolicy`.
    pub retries: u32,
    /// Transparent retries: streams opened again because the request had
    /// not reached the server's application (a connection that failed
    /// before it left, a stream the server refused or a GOAWAY cut off);
    /// not counted against `maxAttempts`. `attempts` counts the streams
    /// both kinds opened; a retry after a connection failed before the
    /// request left follows a stream that never opened, so `attempts` may
    /// be less than 1 + `retries` + `transparent_retries`.
    pub transparent_retries: u32,
}

/// Writes `call`'s statistics so far to `*stats_out` (final once the call
/// has ended): attempts, messages and bytes each way (as the application
/// sees them and on the wire), the time waiting for a connection, the time
/// to the response headers, the total time. `stats_size` is
/// `sizeof(rgrpc_call_stats)` as the caller was compiled: later versions
/// only append fields and fill no more than `stats_size` bytes. The peer is
/// `rgrpc_call_peer`. Returns `RGRPC_RESULT_OK`,
/// `RGRPC_RESULT_NULL_PARAMETER` (call or stats_out NULL). Thread-safe; a
/// cheap read of relaxed counters (figures read together may be one
/// message apart while the call runs).
#[no_mangle]
pub extern "C" fn rgrpc_call_get_stats(
    call: *const rgrpc_call,
    stats_out: *mut rgrpc_call_stats,
    stats_size: usize,
) -> rgrpc_result {
    boundary(|| {
        let c = try_ref_or_null!(rgrpc_call, call);
        if stats_out.is_null() {
            return c
                .last_error
                .fail(rgrpc_result::NullParameter, c"stats_out is NULL");
        }
        let s = c.call.stats();
        let us = |d: Option<std::time::Duration>| {
            d.map_or(-1, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        };
        let full = rgrpc_call_stats {
            attempts: s.attempts,
            ended: s.ended as u32,
            messages_sent: s.messages_sent,
            bytes_sent: s.bytes_sent,
            wire_bytes_sent: s.wire_bytes_sent,
            messages_received: s.messages_received,
            bytes_received: s.bytes_received,
            wire_bytes_received: s.wire_bytes_received,
            pick_wait_us: us(s.pick_wait),
            first_response_us: us(s.time_to_first_response),
            total_us: us(Some(s.total)),
            retries: s.retries,
            transparent_retries: s.transparent_retries,
        };
        let n = stats_size.min(std::mem::size_of::<rgrpc_call_stats>());
        // SAFETY: stats_out points to at least stats_size writable bytes
        // (the caller's struct); n is at most that and the size of `full`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&full as *const rgrpc_call_stats).cast::<u8>(),
                stats_out.cast::<u8>(),
                n,
            )
        };
        rgrpc_result::Ok
    })
}

/// The message of the last function on `call` that failed in the calling
/// thread (UTF-8, NUL-terminated; `""` when none has, and for NULL), e.g.
/// `"another thread is receiving on this call"` after
/// `RGRPC_RESULT_BUSY`. Messages are kept per thread, so another thread's
/// failure on the same call never changes (or frees) the string this
/// thread reads; a successful function leaves it as it was.
///
/// Borrowed: valid until this thread's next failing function on `call`,
/// or `rgrpc_call_free(call)`, whichever comes first; do not free.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_last_error(call: *const rgrpc_call) -> *const c_char {
    boundary(|| {
        // SAFETY: call is NULL or a live call; the text lives in the call,
        // which the application's reference keeps until its free.
        match unsafe { try_ref::<rgrpc_call>(call) } {
            Some(c) => c.last_error.get(),
            None => c"".as_ptr(),
        }
    })
}

/// Releases the application's reference to the call. If the call is still
/// active it is cancelled (status CANCELLED; its done callbacks still run):
/// threads blocked in a function on it return promptly (with the result
/// each function gives for a cancelled or freed call), and the memory goes
/// when the last of them has returned. NULL is a no-op.
///
/// Safe while other threads are inside functions on the call that they
/// entered before this free (see `rgrpc_call`); using the handle at the
/// same time as or after the free, or freeing it twice, is undefined.
/// Borrowed results (initial metadata, response encoding, last error)
/// become invalid. May be called from the call's own callbacks.
#[no_mangle]
pub extern "C" fn rgrpc_call_free(call: *mut rgrpc_call) {
    boundary(|| {
        // SAFETY: call is NULL or a live call whose reference the caller
        // gives up here.
        if let Some(c) = unsafe { take_arc::<rgrpc_call>(call) } {
            crate::channel::api_trace(|| "rgrpc_call_free".to_string());
            c.freed.store(true, Ordering::Release);
            c.call.cancel();
        }
    })
}
