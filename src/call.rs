//! Calls: per-call options, the call object (all four RPC patterns), the
//! unary helpers, and the callbacks.

use super::boundary::boundary;
use super::buffer::{self, rgrpc_buffer};
use super::callback::UserData;
use super::channel::{rgrpc_channel, ChannelHandle};
use super::error::{cstring, rgrpc_result, LastError, Text};
use super::handle::{
    block, block_failure, bytes_arg, clone_arc, free_boxed, str_checked, str_or_error, take_arc,
    to_arc, to_boxed, try_arc_or_null, try_mut_or_null, try_ref, try_ref_or_null, with_timeout,
    write_out, Castable,
};
use super::metadata::rgrpc_metadata;
use super::status::rgrpc_status;
use super::version::monotonic_ms;
use bytes::Bytes;
use rgrpc_core::call::{StartError, UnaryOutcome};
use rgrpc_core::codec::compression::Compression;
use rgrpc_core::credentials::CallCredentials;
use rgrpc_core::{Call, CallError, CallOptions, Metadata, SendFlags, Status};
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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

/// Per-call settings: timeout or deadline, metadata, wait-for-ready.
///
/// Box-owned, mutable: use from one thread at a time. Calls copy what they
/// need at start, so one options object may serve many calls and be freed
/// any time after. A timeout is measured from each call's start.
///
/// Methods: `rgrpc_call_options_new`, `rgrpc_call_options_set_timeout_ms`,
/// `rgrpc_call_options_set_deadline_ms`, `rgrpc_call_options_add_metadata`,
/// `rgrpc_call_options_add_metadata_string`,
/// `rgrpc_call_options_set_wait_for_ready`,
/// `rgrpc_call_options_set_compression`, `rgrpc_call_options_set_credentials`,
/// `rgrpc_call_options_set_inline_callbacks`, `rgrpc_call_options_last_error`,
/// `rgrpc_call_options_free`.
pub struct rgrpc_call_options {
    _private: [u8; 0],
}

pub(crate) struct CallOptionsBuilder {
    timeout: Option<Duration>,
    deadline_ms: Option<i64>,
    metadata: Metadata,
    wait_for_ready: bool,
    compression: Option<Compression>,
    credentials: Option<CallCredentials>,
    inline_callbacks: bool,
    last_error: CString,
}

impl CallOptionsBuilder {
    fn build(&self) -> CallOptions {
        let now = Instant::now();
        let mut deadline = self.timeout.map(|t| now + t);
        if let Some(ms) = self.deadline_ms {
            let left = ms.saturating_sub(monotonic_ms()).max(0) as u64;
            let d = now + Duration::from_millis(left);
            deadline = Some(deadline.map_or(d, |x| x.min(d)));
        }
        CallOptions {
            deadline,
            metadata: self.metadata.clone(),
            wait_for_ready: self.wait_for_ready,
            compression: self.compression,
            credentials: self.credentials.clone(),
            unary_response: false,
            inline_callbacks: self.inline_callbacks,
        }
    }
}

impl Castable for rgrpc_call_options {
    type Rust = CallOptionsBuilder;
}

/// Creates call options with no deadline, no metadata, fail-fast.
/// Owned by the caller: free with `rgrpc_call_options_free`.
#[no_mangle]
pub extern "C" fn rgrpc_call_options_new() -> *mut rgrpc_call_options {
    boundary(|| {
        to_boxed::<rgrpc_call_options>(CallOptionsBuilder {
            timeout: None,
            deadline_ms: None,
            metadata: Metadata::new(),
            wait_for_ready: false,
            compression: None,
            credentials: None,
            inline_callbacks: false,
            last_error: CString::default(),
        })
    })
}

/// Sets a timeout in milliseconds, measured from the start of each call
/// that uses these options (0 = already expired). It is sent to the server
/// as `grpc-timeout`; when it passes, the call ends with DEADLINE_EXCEEDED,
/// including while connecting. Replaces a previous timeout; with a deadline
/// too, the earlier wins.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER` or
/// `RGRPC_RESULT_INVALID_ARGUMENT` (negative).
#[no_mangle]
pub extern "C" fn rgrpc_call_options_set_timeout_ms(
    opts: *mut rgrpc_call_options,
    timeout_ms: i64,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_call_options, opts);
        if timeout_ms < 0 {
            b.last_error = cstring(&format!("timeout {timeout_ms} ms is negative"));
            return rgrpc_result::InvalidArgument;
        }
        b.timeout = Some(Duration::from_millis(timeout_ms as u64));
        rgrpc_result::Ok
    })
}

/// Sets an absolute deadline in milliseconds of `CLOCK_MONOTONIC`, the
/// clock of `rgrpc_now_ms()` (e.g. `rgrpc_now_ms() + 500`). A deadline in
/// the past makes calls end at once with DEADLINE_EXCEEDED.
///
/// Returns `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub extern "C" fn rgrpc_call_options_set_deadline_ms(
    opts: *mut rgrpc_call_options,
    deadline_ms: i64,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_call_options, opts);
        b.deadline_ms = Some(deadline_ms);
        rgrpc_result::Ok
    })
}

/// Adds a metadata entry sent with the request headers.
///
/// `key`: lowercase ASCII `0-9 a-z _ - .`, not starting with `grpc-`, and
/// not a header the library sets (`te`, `content-type`, `host`,
/// `connection`). `user-agent` is accepted: its values go, in order, in
/// front of the channel's user agent in the request's one `user-agent`
/// header (`my-client/1.0 grpc-c-rgrpc/0.1.0`).
/// `value`/`value_len`: for keys ending in `-bin` any bytes (sent base64);
/// otherwise printable ASCII (0x20-0x7E). Both are copied. `value` may be
/// NULL when `value_len` is 0. Repeated keys are sent in order.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER`,
/// `RGRPC_RESULT_INVALID_UTF8` or `RGRPC_RESULT_INVALID_METADATA` (the
/// reason in `rgrpc_call_options_last_error`).
#[no_mangle]
pub extern "C" fn rgrpc_call_options_add_metadata(
    opts: *mut rgrpc_call_options,
    key: *const c_char,
    value: *const u8,
    value_len: usize,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_call_options, opts);
        let key = match str_or_error(&mut b.last_error, key, "metadata key") {
            Ok(k) => k,
            Err(r) => return r,
        };
        // SAFETY: value is NULL or points to value_len readable bytes.
        let Some(v) = (unsafe { bytes_arg(value, value_len) }) else {
            b.last_error = cstring("value is NULL but value_len is not 0");
            return rgrpc_result::NullParameter;
        };
        match b.metadata.add(key, v) {
            Ok(()) => rgrpc_result::Ok,
            Err(e) => {
                b.last_error = cstring(&e.0);
                rgrpc_result::InvalidMetadata
            }
        }
    })
}

/// Adds a metadata entry whose value is a NUL-terminated string. Same
/// rules and results as `rgrpc_call_options_add_metadata`.
#[no_mangle]
pub extern "C" fn rgrpc_call_options_add_metadata_string(
    opts: *mut rgrpc_call_options,
    key: *const c_char,
    value: *const c_char,
) -> rgrpc_result {
    boundary(|| {
        if value.is_null() {
            let b = try_mut_or_null!(rgrpc_call_options, opts);
            b.last_error = cstring("value is NULL");
            return rgrpc_result::NullParameter;
        }
        // SAFETY: value is a NUL-terminated string per the header.
        let bytes = unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes();
        rgrpc_call_options_add_metadata(opts, key, bytes.as_ptr(), bytes.len())
    })
}

/// Sets wait-for-ready (`doc/wait-for-ready.md`). By default a call fails
/// fast: it ends with UNAVAILABLE at once while the channel is in
/// TRANSIENT_FAILURE. With wait-for-ready it waits for the channel to be
/// READY, until its deadline (DEADLINE_EXCEEDED) or the channel closes
/// (CANCELLED). Returns `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub extern "C" fn rgrpc_call_options_set_wait_for_ready(
    opts: *mut rgrpc_call_options,
    wait_for_ready: bool,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_call_options, opts);
        b.wait_for_ready = wait_for_ready;
        rgrpc_result::Ok
    })
}

/// Runs the done callbacks of calls using these options (those of
/// `rgrpc_call_on_done` and the callback of `rgrpc_call_unary_async`)
/// inline: on the thread driving the library's network I/O, as soon as the
/// call ends, instead of on a library thread that may block. This saves a
/// thread hand-off (two context switches) per call: use it when callbacks
/// are short and start further calls, the way to keep many calls in flight
/// from one thread at the lowest cost (see `bench/rgrpc_bench.c`).
///
/// Inline callbacks follow the rules of `rgrpc_message_cb`: they must not
/// block, and must not call blocking rgrpc functions (send, recv, finish,
/// unary, wait...: in the default caller-driven runtime those return
/// `RGRPC_RESULT_RUNTIME`); starting calls (`rgrpc_call_unary_async`,
/// `rgrpc_call_start`), `rgrpc_call_cancel` and, as in the default mode,
/// `rgrpc_call_free` of the call are fine. Default: off. Returns `RGRPC_RESULT_OK` or
/// `RGRPC_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub extern "C" fn rgrpc_call_options_set_inline_callbacks(
    opts: *mut rgrpc_call_options,
    inline_callbacks: bool,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_call_options, opts);
        b.inline_callbacks = inline_callbacks;
        rgrpc_result::Ok
    })
}

/// Sets the compression of messages this call sends, overriding the
/// channel's default: `RGRPC_COMPRESSION_NONE`, `RGRPC_COMPRESSION_DEFLATE`
/// or `RGRPC_COMPRESSION_GZIP`. Messages that compression would not make
/// smaller, and messages sent with `RGRPC_SEND_NO_COMPRESS`, go
/// uncompressed (the message's flag says so). Responses are decompressed
/// whatever this says.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER` or
/// `RGRPC_RESULT_INVALID_ARGUMENT` (not an `rgrpc_compression` value).
#[no_mangle]
pub extern "C" fn rgrpc_call_options_set_compression(
    opts: *mut rgrpc_call_options,
    compression: u32,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_call_options, opts);
        match Compression::from_u32(compression) {
            Some(c) => {
                b.compression = Some(c);
                rgrpc_result::Ok
            }
            None => {
                b.last_error = cstring(&format!("{compression} is not an rgrpc_compression value"));
                rgrpc_result::InvalidArgument
            }
        }
    })
}

/// Sets call credentials for calls using these options, added after the
/// channel's own (NULL clears). Borrowed: the options keep a reference.
/// Returns `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER` (opts NULL).
#[no_mangle]
pub extern "C" fn rgrpc_call_options_set_credentials(
    opts: *mut rgrpc_call_options,
    creds: *const super::credentials::rgrpc_call_credentials,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_call_options, opts);
        b.credentials = super::credentials::call_credentials_of(creds);
        rgrpc_result::Ok
    })
}

/// The message of the most recent failure on `opts` (`""` if none or
/// NULL). Borrowed: valid until the next call on `opts` or its free.
#[no_mangle]
pub extern "C" fn rgrpc_call_options_last_error(opts: *const rgrpc_call_options) -> *const c_char {
    boundary(|| {
        // SAFETY: opts is NULL or live call options.
        match unsafe { try_ref::<rgrpc_call_options>(opts) } {
            Some(b) => b.last_error.as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

/// Frees call options. NULL is a no-op. Calls already started are not
/// affected.
#[no_mangle]
pub extern "C" fn rgrpc_call_options_free(opts: *mut rgrpc_call_options) {
    boundary(|| {
        // SAFETY: opts is NULL or live options owned by the caller.
        unsafe { free_boxed::<rgrpc_call_options>(opts) }
    })
}

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
/// `rgrpc_call_response_encoding`, `rgrpc_call_last_error`) are valid until
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
/// `rgrpc_call_response_encoding`, `rgrpc_call_last_error`,
/// `rgrpc_call_free`, `rgrpc_call_unary`, `rgrpc_call_unary_buffer`,
/// `rgrpc_call_unary_async`.
pub struct rgrpc_call {
    _private: [u8; 0],
}

/// What an `rgrpc_call` handle points to (through an `Arc`).
pub(crate) struct CallHandle {
    call: Call,
    /// Set by `rgrpc_call_free`: the application's reference is gone, so
    /// nothing borrowed from the call may be handed out any more.
    freed: AtomicBool,
    last_error: LastError,
}

impl Castable for rgrpc_call {
    type Rust = CallHandle;
}

/// A new call handle holding the application's reference.
fn call_handle(call: Call) -> *mut rgrpc_call {
    to_arc::<rgrpc_call>(Arc::new(CallHandle {
        call,
        freed: AtomicBool::new(false),
        last_error: LastError::default(),
    })) as *mut rgrpc_call
}

impl CallHandle {
    /// Records why `e` happened and returns its result code.
    fn call_error(&self, e: CallError) -> rgrpc_result {
        let r = match e {
            CallError::Ended => rgrpc_result::CallEnded,
            CallError::SendClosed => rgrpc_result::SendClosed,
            CallError::Busy(_) => rgrpc_result::Busy,
            CallError::Runtime(_) => rgrpc_result::Runtime,
        };
        let text = match (&e, self.call.status()) {
            (CallError::Ended, Some(st)) => format!("{e} ({})", status_text(&st)),
            _ => e.to_string(),
        };
        self.last_error.fail(r, text)
    }

    /// Runs `f` on this thread (`block`), recording why it cannot.
    fn block<F: std::future::Future>(&self, f: F) -> Result<F::Output, rgrpc_result> {
        block(f).map_err(|r| self.last_error.fail(r, block_failure()))
    }

    /// Records a failed status as the reason for `RGRPC_RESULT_RPC_FAILED`.
    fn rpc_failed(&self, st: &Status) {
        self.last_error.fail(
            rgrpc_result::RpcFailed,
            format!("the RPC ended with {}", status_text(st)),
        );
    }
}

/// `status CODE: details` for messages.
fn status_text(st: &Status) -> String {
    let code = rgrpc_core::Code::name(st.code());
    match st.message() {
        "" => format!("status {code}"),
        m => format!("status {code}: {m}"),
    }
}

/// Records why a call could not start on `ch` and returns its result code.
fn start_error(ch: &ChannelHandle, e: StartError) -> rgrpc_result {
    let r = match e {
        StartError::ChannelClosed => rgrpc_result::ChannelClosed,
        StartError::InvalidMethod(_) => rgrpc_result::InvalidMethod,
        StartError::Runtime(_) => rgrpc_result::Runtime,
    };
    ch.last_error.fail(r, e.to_string())
}

fn options_of(opts: *const rgrpc_call_options) -> CallOptions {
    // SAFETY: opts is NULL or live call options (header contract).
    match unsafe { try_ref::<rgrpc_call_options>(opts) } {
        Some(b) => b.build(),
        None => CallOptions::default(),
    }
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
/// `RGRPC_RESULT_CHANNEL_CLOSED` or `RGRPC_RESULT_RUNTIME`; on failure
/// (channel not NULL) the reason is `rgrpc_channel_last_error(channel)`.
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
        let method = match str_checked(method, "method") {
            Ok(m) => m,
            Err((r, text)) => return ch.last_error.fail(r, text),
        };
        if call_out.is_null() {
            return ch
                .last_error
                .fail(rgrpc_result::NullParameter, c"call_out is NULL");
        }
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
/// `RGRPC_RESULT_RUNTIME`. The reason of a failure is
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
fn send_flags(flags: u32) -> Result<SendFlags, String> {
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
/// `RGRPC_RESULT_RUNTIME` or `RGRPC_RESULT_NULL_PARAMETER`; the reason of
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
/// is set), `RGRPC_RESULT_RUNTIME` and `RGRPC_RESULT_NULL_PARAMETER`.
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

fn give_status(st: Arc<Status>, status_out: *mut *const rgrpc_status) -> rgrpc_result {
    let ok = st.is_ok();
    if !status_out.is_null() {
        write_out!(status_out, to_arc::<rgrpc_status>(st));
    }
    if ok {
        rgrpc_result::Ok
    } else {
        rgrpc_result::RpcFailed
    }
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
/// `RGRPC_RESULT_RUNTIME` and `RGRPC_RESULT_NULL_PARAMETER`; the reason of
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
            Ok(Ok(st)) => {
                if !st.is_ok() {
                    c.rpc_failed(&st);
                }
                give_status(st, status_out)
            }
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
/// the call), `RGRPC_RESULT_RUNTIME` or `RGRPC_RESULT_NULL_PARAMETER`; the
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
/// `RGRPC_RESULT_RUNTIME` or `RGRPC_RESULT_NULL_PARAMETER`; the reason of
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
/// `RGRPC_RESULT_NULL_PARAMETER` (call or cb NULL); the reason of a
/// failure is `rgrpc_call_last_error(call)`.
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
/// `RGRPC_RESULT_NULL_PARAMETER` (call or cb NULL) or
/// `RGRPC_RESULT_RUNTIME`; the reason of a failure is
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
        match unsafe { try_ref::<rgrpc_call>(call) }.and_then(|c| c.call.response_encoding()) {
            Some(s) => s.as_ptr(),
            None => std::ptr::null(),
        }
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
            c.freed.store(true, Ordering::Release);
            c.call.cancel();
        }
    })
}

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
/// `RGRPC_RESULT_CHANNEL_CLOSED`, `RGRPC_RESULT_RUNTIME`. The reason of
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
        let method = match str_checked(method, "method") {
            Ok(m) => m,
            Err((r, text)) => return ch.last_error.fail(r, text),
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
            if !st.is_ok() {
                ch.last_error.fail(
                    rgrpc_result::RpcFailed,
                    format!("the RPC ended with {}", status_text(&st)),
                );
            }
            give_status(st, status_out)
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
        let method = match str_checked(method, "method") {
            Ok(m) => m,
            Err((r, text)) => return ch.last_error.fail(r, text),
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
/// `RGRPC_RESULT_RUNTIME` (then `cb` never runs); the reason of a failure
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
        let method = match str_checked(method, "method") {
            Ok(m) => m,
            Err((r, text)) => return ch.last_error.fail(r, text),
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
