//! Calls: per-call options, the call object (all four RPC patterns), the
//! unary helpers, and the callbacks.

use super::boundary::boundary;
use super::buffer::{self, rgrpc_buffer};
use super::callback::UserData;
use super::channel::rgrpc_channel;
use super::error::{cstring, rgrpc_result};
use super::handle::{
    block, bytes_arg, free_boxed, str_or_error, to_arc, to_boxed, try_mut_or_null, try_ref,
    try_ref_or_null, try_str, with_timeout, write_out, Castable,
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
/// blocked in rgrpc). It must not unwind, must not free the call, and must
/// not call blocking rgrpc functions (send, recv, finish, unary, wait...:
/// they return `RGRPC_RESULT_RUNTIME`); non-blocking ones such as
/// `rgrpc_call_cancel` are fine. Keep it short: network I/O waits for it.
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
/// `rgrpc_call_options_last_error`, `rgrpc_call_options_free`.
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
/// `rgrpc_call_free` of the call (when no other function is using its
/// handle) are fine. Default: off. Returns `RGRPC_RESULT_OK` or
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
/// return early when the call ends (deadline, cancel, channel close).
///
/// Thread rules: one thread may send while another receives; a second
/// concurrent sender or receiver gets `RGRPC_RESULT_BUSY`.
/// `rgrpc_call_cancel`, `rgrpc_call_is_active` and
/// `rgrpc_call_time_remaining_ms` are safe from any thread at any time.
/// `rgrpc_call_free` must not race with other use of the same handle.
/// Box-owned handle to shared state: callbacks and the library's tasks
/// keep what they need alive.
///
/// Methods: `rgrpc_call_start`, `rgrpc_call_send`, `rgrpc_call_close_send`,
/// `rgrpc_call_recv`, `rgrpc_call_finish`, `rgrpc_call_initial_metadata`,
/// `rgrpc_call_is_active`, `rgrpc_call_time_remaining_ms`,
/// `rgrpc_call_cancel`, `rgrpc_call_wait`, `rgrpc_call_on_done`,
/// `rgrpc_call_on_message`, `rgrpc_call_response_encoding`, `rgrpc_call_free`.
pub struct rgrpc_call {
    _private: [u8; 0],
}

impl Castable for rgrpc_call {
    type Rust = Call;
}

fn start_error(e: StartError) -> rgrpc_result {
    match e {
        StartError::ChannelClosed => rgrpc_result::ChannelClosed,
        StartError::InvalidMethod(_) => rgrpc_result::InvalidMethod,
        StartError::Runtime(_) => rgrpc_result::Runtime,
    }
}

fn call_error(e: CallError) -> rgrpc_result {
    match e {
        CallError::Ended => rgrpc_result::CallEnded,
        CallError::SendClosed => rgrpc_result::SendClosed,
        CallError::Busy(_) => rgrpc_result::Busy,
        CallError::Runtime(_) => rgrpc_result::Runtime,
    }
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
/// to `*call_out`, owned by the caller (`rgrpc_call_free`).
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER`,
/// `RGRPC_RESULT_INVALID_UTF8`, `RGRPC_RESULT_INVALID_METHOD`,
/// `RGRPC_RESULT_CHANNEL_CLOSED` or `RGRPC_RESULT_RUNTIME`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_start(
    channel: *mut rgrpc_channel,
    method: *const c_char,
    opts: *const rgrpc_call_options,
    call_out: *mut *mut rgrpc_call,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        let method = try_str!(method);
        if call_out.is_null() {
            return rgrpc_result::NullParameter;
        }
        match ch.start_call(method, options_of(opts)) {
            Ok(call) => {
                write_out!(call_out, to_boxed::<rgrpc_call>(call));
                rgrpc_result::Ok
            }
            Err(e) => start_error(e),
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
/// RESOURCE_EXHAUSTED); `RGRPC_RESULT_SEND_CLOSED`; `RGRPC_RESULT_BUSY`
/// (another thread is sending); `RGRPC_RESULT_NULL_PARAMETER`;
/// `RGRPC_RESULT_INVALID_ARGUMENT` (unknown flag bits).
#[no_mangle]
pub extern "C" fn rgrpc_call_send(
    call: *mut rgrpc_call,
    data: *const u8,
    len: usize,
    flags: u32,
) -> rgrpc_result {
    boundary(|| {
        let c = try_ref_or_null!(rgrpc_call, call);
        let Some(f) = send_flags(flags) else {
            return rgrpc_result::InvalidArgument;
        };
        // SAFETY: data is NULL or points to len readable bytes.
        let Some(msg) = (unsafe { bytes_arg(data, len) }) else {
            return rgrpc_result::NullParameter;
        };
        send_result(block(c.send(msg, f)))
    })
}

fn send_result(r: Result<Result<(), CallError>, rgrpc_result>) -> rgrpc_result {
    match r {
        Ok(Ok(())) => rgrpc_result::Ok,
        Ok(Err(e)) => call_error(e),
        Err(r) => r,
    }
}

/// Sends a message in a buffer, which the call takes (in every case, also
/// on errors): one from `rgrpc_buffer_new` written in place goes out
/// without a copy; a received one is copied. Otherwise as
/// `rgrpc_call_send` (blocking, flags, results). Do not use `msg` after
/// this call.
#[no_mangle]
pub extern "C" fn rgrpc_call_send_buffer(
    call: *mut rgrpc_call,
    msg: *mut rgrpc_buffer,
    flags: u32,
) -> rgrpc_result {
    boundary(|| {
        let msg = buffer::take(msg);
        let c = try_ref_or_null!(rgrpc_call, call);
        let Some(f) = send_flags(flags) else {
            return rgrpc_result::InvalidArgument;
        };
        let Some(msg) = msg else {
            return rgrpc_result::NullParameter;
        };
        send_result(msg.with_message(|m| block(c.send_message(m, f))))
    })
}

/// The send flags, or None for unknown bits.
fn send_flags(flags: u32) -> Option<SendFlags> {
    if flags & !(RGRPC_SEND_LAST | RGRPC_SEND_NO_COMPRESS | RGRPC_SEND_BUFFER_HINT) != 0 {
        return None;
    }
    Some(SendFlags {
        last: flags & RGRPC_SEND_LAST != 0,
        no_compress: flags & RGRPC_SEND_NO_COMPRESS != 0,
        buffer_hint: flags & RGRPC_SEND_BUFFER_HINT != 0,
    })
}

/// Half-closes the call: no more messages will be sent. Idempotent.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_CALL_ENDED`,
/// `RGRPC_RESULT_BUSY` or `RGRPC_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub extern "C" fn rgrpc_call_close_send(call: *mut rgrpc_call) -> rgrpc_result {
    boundary(|| {
        let c = try_ref_or_null!(rgrpc_call, call);
        send_result(block(c.close_send()))
    })
}

/// Receives the next message, blocking until it arrives.
///
/// On `RGRPC_RESULT_OK` writes a buffer to `*msg_out`, owned by the caller
/// (`rgrpc_buffer_free`). `RGRPC_RESULT_END_OF_STREAM`: no more messages —
/// the server finished, or the call failed; `rgrpc_call_finish` gives the
/// status. Also `RGRPC_RESULT_BUSY` (another thread is receiving, or a
/// message callback is set) and `RGRPC_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub extern "C" fn rgrpc_call_recv(
    call: *mut rgrpc_call,
    msg_out: *mut *mut rgrpc_buffer,
) -> rgrpc_result {
    boundary(|| {
        let c = try_ref_or_null!(rgrpc_call, call);
        if msg_out.is_null() {
            return rgrpc_result::NullParameter;
        }
        match block(c.recv()) {
            Ok(Ok(Some(b))) => {
                write_out!(msg_out, buffer::received(b));
                rgrpc_result::Ok
            }
            Ok(Ok(None)) => rgrpc_result::EndOfStream,
            Ok(Err(e)) => call_error(e),
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
/// `RGRPC_RESULT_RPC_FAILED` when it is not; in both cases, when
/// `status_out` is not NULL, `*status_out` receives the status, owned by
/// the caller (`rgrpc_status_free`). Also `RGRPC_RESULT_NULL_PARAMETER`.
/// May be called again (returns the same status).
#[no_mangle]
pub extern "C" fn rgrpc_call_finish(
    call: *mut rgrpc_call,
    status_out: *mut *const rgrpc_status,
) -> rgrpc_result {
    boundary(|| {
        let c = try_ref_or_null!(rgrpc_call, call);
        match block(c.finish()) {
            Ok(Ok(st)) => give_status(st, status_out),
            Ok(Err(e)) => call_error(e),
            Err(r) => r,
        }
    })
}

/// Waits for the server's initial metadata (response headers) and writes a
/// borrowed view to `*md_out`, valid until `rgrpc_call_free`; do not free.
/// Empty when the call ended without headers (e.g. a Trailers-Only error).
///
/// Returns `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub extern "C" fn rgrpc_call_initial_metadata(
    call: *mut rgrpc_call,
    md_out: *mut *const rgrpc_metadata,
) -> rgrpc_result {
    boundary(|| {
        let c = try_ref_or_null!(rgrpc_call, call);
        if md_out.is_null() {
            return rgrpc_result::NullParameter;
        }
        match block(c.initial_metadata()) {
            Ok(Ok(md)) => {
                write_out!(md_out, md as *const Metadata as *const rgrpc_metadata);
                rgrpc_result::Ok
            }
            Ok(Err(e)) => call_error(e),
            Err(r) => r,
        }
    })
}

/// True while the call has not ended; false for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_is_active(call: *const rgrpc_call) -> bool {
    boundary(|| {
        // SAFETY: call is NULL or a live call.
        unsafe { try_ref::<rgrpc_call>(call) }.is_some_and(|c| c.is_active())
    })
}

/// Milliseconds left before the call's deadline: -1 when it has none (or
/// for NULL), 0 once passed. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_time_remaining_ms(call: *const rgrpc_call) -> i64 {
    boundary(|| {
        // SAFETY: call is NULL or a live call.
        match unsafe { try_ref::<rgrpc_call>(call) }.and_then(|c| c.time_remaining()) {
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
        let c = try_ref_or_null!(rgrpc_call, call);
        c.cancel();
        rgrpc_result::Ok
    })
}

/// Waits until the call has ended and its done callback (if any) has
/// returned. `timeout_ms` < 0 waits without limit.
///
/// Note: a streaming call ends only when its status is known, which needs
/// its messages to be read (or a deadline, cancel, or channel close).
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_TIMEOUT` or
/// `RGRPC_RESULT_NULL_PARAMETER`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_wait(call: *mut rgrpc_call, timeout_ms: i64) -> rgrpc_result {
    boundary(|| {
        let c = try_ref_or_null!(rgrpc_call, call);
        match block(with_timeout(timeout_ms, c.wait())) {
            Ok(Some(())) => rgrpc_result::Ok,
            Ok(None) => rgrpc_result::Timeout,
            Err(r) => r,
        }
    })
}

/// Registers `cb` to run once when the call ends, like grpcio's
/// `add_callback`. One or more callbacks may be registered; they run in
/// order on a library thread (see `rgrpc_call_done_cb`).
///
/// Returns `RGRPC_RESULT_OK` (registered), `RGRPC_RESULT_CALL_ENDED` (the
/// call has already ended: `cb` is not registered and will not run),
/// `RGRPC_RESULT_NULL_PARAMETER` (call or cb NULL).
#[no_mangle]
pub extern "C" fn rgrpc_call_on_done(
    call: *mut rgrpc_call,
    cb: rgrpc_call_done_cb,
    user_data: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        let c = try_ref_or_null!(rgrpc_call, call);
        let Some(f) = cb else {
            return rgrpc_result::NullParameter;
        };
        let ud = UserData(user_data);
        let r = c.on_done(Box::new(move |st: &Arc<Status>| {
            let ud = ud;
            // SAFETY: f is the caller's callback; status is borrowed for the call.
            unsafe { f(ud.0, Arc::as_ptr(st) as *const rgrpc_status) }
        }));
        match r {
            Ok(()) => rgrpc_result::Ok,
            Err(_) => rgrpc_result::CallEnded,
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
/// `RGRPC_RESULT_RUNTIME`.
#[no_mangle]
pub extern "C" fn rgrpc_call_on_message(
    call: *mut rgrpc_call,
    cb: rgrpc_message_cb,
    user_data: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        let c = try_ref_or_null!(rgrpc_call, call);
        let Some(f) = cb else {
            return rgrpc_result::NullParameter;
        };
        let ud = UserData(user_data);
        let r = c.on_message(move |m: Bytes| {
            let ud = ud;
            // SAFETY: f is the caller's callback; data is borrowed for the call.
            unsafe { f(ud.0, m.as_ptr(), m.len()) }
        });
        match r {
            Ok(()) => rgrpc_result::Ok,
            Err(e) => call_error(e),
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
        // SAFETY: call is NULL or a live call.
        match unsafe { try_ref::<rgrpc_call>(call) }.and_then(|c| c.response_encoding()) {
            Some(s) => s.as_ptr(),
            None => std::ptr::null(),
        }
    })
}

/// Frees the call handle. If the call is still active it is cancelled
/// first (its done callbacks still run, with CANCELLED). NULL is a no-op.
/// No other thread may be using the handle. Borrowed metadata from
/// `rgrpc_call_initial_metadata` becomes invalid.
#[no_mangle]
pub extern "C" fn rgrpc_call_free(call: *mut rgrpc_call) {
    boundary(|| {
        // SAFETY: call is NULL or a live call owned by the caller.
        unsafe { free_boxed::<rgrpc_call>(call) }
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
/// `RGRPC_RESULT_CHANNEL_CLOSED`, `RGRPC_RESULT_RUNTIME`. Thread-safe.
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
        let method = try_str!(method);
        if response_out.is_null() {
            return rgrpc_result::NullParameter;
        }
        // SAFETY: request is NULL or points to request_len readable bytes.
        let Some(req) = (unsafe { bytes_arg(request, request_len) }) else {
            return rgrpc_result::NullParameter;
        };
        let o = options_of(opts);
        unary_result(block(ch.unary(method, o, req)), response_out, status_out)
    })
}

/// The result of a blocking unary call, with the response and status
/// written out as `rgrpc_call_unary` says. `response_out` is not NULL.
fn unary_result(
    r: Result<Result<UnaryOutcome, StartError>, rgrpc_result>,
    response_out: *mut *mut rgrpc_buffer,
    status_out: *mut *const rgrpc_status,
) -> rgrpc_result {
    match r {
        Ok(Ok((msg, st))) => {
            if let Some(m) = msg {
                write_out!(response_out, buffer::received(m));
            }
            give_status(st, status_out)
        }
        Ok(Err(e)) => start_error(e),
        Err(r) => r,
    }
}

/// `rgrpc_call_unary` with the request in a buffer, which the call takes
/// (in every case, also on errors): one from `rgrpc_buffer_new` written in
/// place goes out without a copy; a received one is copied. Results and
/// out-parameters as `rgrpc_call_unary`. Do not use `request` afterwards.
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
        let method = try_str!(method);
        let (Some(request), false) = (request, response_out.is_null()) else {
            return rgrpc_result::NullParameter;
        };
        let o = options_of(opts);
        let r = request.with_message(|m| block(ch.unary_message(method, o, m)));
        unary_result(r, response_out, status_out)
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
/// When `call_out` is not NULL it receives the call (owned by the caller):
/// wait for it with `rgrpc_call_wait(call, timeout_ms)`, cancel it with
/// `rgrpc_call_cancel`, read the response with `rgrpc_call_recv` and the
/// status with `rgrpc_call_finish` once it ended; freeing it while active
/// cancels the call. When `call_out` is NULL the call runs to its end on
/// its own.
///
/// Returns `RGRPC_RESULT_OK` (then `cb` will run exactly once),
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_INVALID_UTF8`,
/// `RGRPC_RESULT_INVALID_METHOD`, `RGRPC_RESULT_CHANNEL_CLOSED`,
/// `RGRPC_RESULT_RUNTIME` (then `cb` never runs). Thread-safe.
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
        let method = try_str!(method);
        // SAFETY: request is NULL or points to request_len readable bytes.
        let Some(req) = (unsafe { bytes_arg(request, request_len) }) else {
            return rgrpc_result::NullParameter;
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
        match ch.unary_async_opt(method, options_of(opts), Bytes::copy_from_slice(req), done) {
            Ok(call) => {
                if call_out.is_null() {
                    call.detach();
                } else {
                    write_out!(call_out, to_boxed::<rgrpc_call>(call));
                }
                rgrpc_result::Ok
            }
            Err(e) => start_error(e),
        }
    })
}
