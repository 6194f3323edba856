//! `rgrpc_call_options`: per-call settings (timeout or deadline, metadata,
//! wait-for-ready, compression, credentials, inline callbacks).

use super::boundary::boundary;
use super::error::{cstring, rgrpc_result};
use super::handle::{
    bytes_arg, free_boxed, str_or_error, to_boxed, try_mut_or_null, try_ref, Castable,
};
use super::version::monotonic_ms;
use rgrpc_core::codec::compression::Compression;
use rgrpc_core::credentials::CallCredentials;
use rgrpc_core::{CallOptions, Metadata};
use std::ffi::{c_char, CString};
use std::time::Duration;
use tokio::time::Instant;

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
    /// None until set: then the service config decides.
    wait_for_ready: Option<bool>,
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
            wait_for_ready: None,
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

/// Sets wait-for-ready (`doc/wait-for-ready.md` in grpc/grpc). By default a call fails
/// fast (unless the channel's service config gives its method
/// `waitForReady`; a value set here wins over the service config): it ends
/// with UNAVAILABLE at once while the channel is in TRANSIENT_FAILURE. With wait-for-ready it waits for the channel to be
/// READY, until its deadline (DEADLINE_EXCEEDED) or the channel closes
/// (CANCELLED). Returns `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub extern "C" fn rgrpc_call_options_set_wait_for_ready(
    opts: *mut rgrpc_call_options,
    wait_for_ready: bool,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_call_options, opts);
        b.wait_for_ready = Some(wait_for_ready);
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

/// The core call options of `opts` (the defaults for NULL).
pub(crate) fn options_of(opts: *const rgrpc_call_options) -> CallOptions {
    // SAFETY: opts is NULL or live call options (header contract).
    match unsafe { try_ref::<rgrpc_call_options>(opts) } {
        Some(b) => b.build(),
        None => CallOptions::default(),
    }
}
