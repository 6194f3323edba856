//! `rgrpc_interceptor` and `rgrpc_hook`: C code wrapped around every call
//! of a channel (the core's `call::intercept`).

use super::boundary::boundary;
use super::callback::UserData;
use super::channel::rgrpc_channel_options;
use super::credentials::rgrpc_destroy_cb;
use super::error::{cstring, rgrpc_result};
use super::handle::{
    bytes_arg, clone_arc, free_arc, str_or_error, to_arc, to_boxed, try_mut_or_null, try_ref,
    write_out, Castable,
};
use super::metadata::rgrpc_metadata;
use super::status::rgrpc_status_code;
use bytes::Bytes;
use rgrpc_core::call::{CallContext, CallStart, Hooks, Interceptor, Reply};
use rgrpc_core::codec::compression::Compression;
use rgrpc_core::{Code, Metadata, Status};
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;
use std::time::Duration;

/// Which hook an `rgrpc_hook` is for; as bits, which hooks an interceptor
/// wants (`rgrpc_interceptor_new`'s `hooks`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rgrpc_hook_kind {
    /// Before the call's first attempt (when its first operation opens it;
    /// before the first message's hook): read or change the method,
    /// metadata, timeout, compression and wait-for-ready; or end the call
    /// before anything is sent.
    Start = 1,
    /// Each message the application sends, before compression: read or
    /// replace it, or end the call.
    SendMessage = 2,
    /// Each message received, after decompression, before the application
    /// gets it: read or replace it, or end the call.
    RecvMessage = 4,
    /// The final status and trailing metadata, before the application (or
    /// a done callback, or a completion queue) sees them: read or replace
    /// them.
    Status = 8,
}

/// Every hook kind, as bits (`rgrpc_interceptor_new`).
pub const RGRPC_HOOK_ALL: u32 = 15;

/// An interceptor: a callback wrapped around every call of the channels
/// it is added to (`rgrpc_channel_options_add_interceptor`), like grpcio's
/// client interceptors and `intercept_channel`.
///
/// Behind it is an `Arc`: created by `rgrpc_interceptor_new`, released
/// with `rgrpc_interceptor_free`; each channel using it keeps its own
/// reference, and its `destroy` callback runs when the last one goes.
/// Immutable; any thread.
///
/// Methods: `rgrpc_interceptor_new`, `rgrpc_interceptor_free`.
pub struct rgrpc_interceptor {
    _private: [u8; 0],
}

impl Castable for rgrpc_interceptor {
    type Rust = CInterceptor;
}

/// An interceptor's callback: `hook` is one step of one call, owned by the
/// callback until it answers it with `rgrpc_hook_proceed` or
/// `rgrpc_hook_fail` (each frees it) — now, or later from any thread; the
/// call waits until then (bounded by its deadline for messages). Read
/// `rgrpc_hook_get_kind(hook)` to see which step it is.
///
/// Called on the thread running the call's operation: the application's
/// (a blocking send or receive) or a library thread. It must not block for
/// long (answer later instead), must not unwind, and must not wait for
/// this call's own operations.
pub type rgrpc_hook_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, hook: *mut rgrpc_hook)>;

pub(crate) struct CInterceptor {
    cb: unsafe extern "C" fn(*mut c_void, *mut rgrpc_hook),
    hooks: Hooks,
    user_data: UserData,
    destroy: rgrpc_destroy_cb,
}

impl Drop for CInterceptor {
    fn drop(&mut self) {
        if let Some(d) = self.destroy {
            // SAFETY: the caller's destroy callback, called once.
            unsafe { d(self.user_data.0) }
        }
    }
}

impl CInterceptor {
    fn call(&self, kind: rgrpc_hook_kind, ctx: &Arc<CallContext>, payload: Payload) {
        let hook = to_boxed::<rgrpc_hook>(HookState {
            kind,
            ctx: ctx.clone(),
            payload,
            method: None,
            last_error: CString::default(),
        });
        // SAFETY: the caller's callback, with a hook it now owns.
        unsafe { (self.cb)(self.user_data.0, hook) }
    }
}

impl Interceptor for CInterceptor {
    fn hooks(&self) -> Hooks {
        self.hooks
    }

    fn start(&self, c: &Arc<CallContext>, s: CallStart, reply: Reply<Result<CallStart, Status>>) {
        self.call(rgrpc_hook_kind::Start, c, Payload::Start(s, reply));
    }

    fn send_message(&self, c: &Arc<CallContext>, m: Bytes, reply: Reply<Result<Bytes, Status>>) {
        self.call(rgrpc_hook_kind::SendMessage, c, Payload::Message(m, reply));
    }

    fn recv_message(&self, c: &Arc<CallContext>, m: Bytes, reply: Reply<Result<Bytes, Status>>) {
        self.call(rgrpc_hook_kind::RecvMessage, c, Payload::Message(m, reply));
    }

    fn status(&self, c: &Arc<CallContext>, s: Status, reply: Reply<Status>) {
        let details = cstring(s.message());
        self.call(
            rgrpc_hook_kind::Status,
            c,
            Payload::Status {
                code: s.code(),
                details,
                trailers: s.trailers().clone(),
                reply,
            },
        );
    }
}

/// Creates an interceptor: `cb` is called with `user_data` for each hook
/// whose bit is in `hooks` (`RGRPC_HOOK_KIND_*` values or'ed, or
/// `RGRPC_HOOK_ALL`); steps without a bit cost nothing. `destroy` (may be
/// NULL) is called once with `user_data` when the interceptor's last
/// reference goes (the application's and every channel's).
///
/// Writes the interceptor to `*out` (owned: `rgrpc_interceptor_free`).
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER` (cb or out
/// NULL) or `RGRPC_RESULT_INVALID_ARGUMENT` (no hook bit, or an unknown
/// bit). Any thread.
#[no_mangle]
pub extern "C" fn rgrpc_interceptor_new(
    hooks: u32,
    cb: rgrpc_hook_cb,
    user_data: *mut c_void,
    destroy: rgrpc_destroy_cb,
    out: *mut *const rgrpc_interceptor,
) -> rgrpc_result {
    boundary(|| {
        let (Some(cb), false) = (cb, out.is_null()) else {
            return rgrpc_result::NullParameter;
        };
        if hooks == 0 || hooks & !RGRPC_HOOK_ALL != 0 {
            return rgrpc_result::InvalidArgument;
        }
        let bit = |k: rgrpc_hook_kind| hooks & k as u32 != 0;
        let i = CInterceptor {
            cb,
            hooks: Hooks {
                start: bit(rgrpc_hook_kind::Start),
                send_message: bit(rgrpc_hook_kind::SendMessage),
                recv_message: bit(rgrpc_hook_kind::RecvMessage),
                status: bit(rgrpc_hook_kind::Status),
            },
            user_data: UserData(user_data),
            destroy,
        };
        write_out!(out, to_arc::<rgrpc_interceptor>(Arc::new(i)));
        rgrpc_result::Ok
    })
}

/// Releases the application's reference (channels keep theirs). NULL is
/// ignored. Any thread.
#[no_mangle]
pub extern "C" fn rgrpc_interceptor_free(interceptor: *const rgrpc_interceptor) {
    // SAFETY: NULL or a reference the caller owns, given up here.
    boundary(|| unsafe { free_arc(interceptor) })
}

/// Adds `interceptor` to the channels made with `opts`, inside those added
/// before: the first added sees the application's start and messages first
/// and the server's messages and status last (as grpcio's
/// `intercept_channel(channel, a, b)`). Retries and hedges happen inside
/// the chain: an interceptor sees one call, not its attempts. The options
/// keep a reference (`interceptor` stays the caller's).
///
/// Returns `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER`. `opts`: one
/// thread at a time.
#[no_mangle]
pub extern "C" fn rgrpc_channel_options_add_interceptor(
    opts: *mut rgrpc_channel_options,
    interceptor: *const rgrpc_interceptor,
) -> rgrpc_result {
    boundary(|| {
        let b = try_mut_or_null!(rgrpc_channel_options, opts);
        // SAFETY: NULL or a live interceptor whose reference the caller holds.
        let Some(i) = (unsafe { clone_arc::<rgrpc_interceptor>(interceptor) }) else {
            return rgrpc_result::NullParameter;
        };
        b.opts.interceptors.push(i);
        rgrpc_result::Ok
    })
}

/// One step of one call given to an interceptor's callback (see
/// `rgrpc_hook_kind`). Owned by the callback until it answers with
/// `rgrpc_hook_proceed` (go on, with what the accessors changed) or
/// `rgrpc_hook_fail` (end the call with a status of its own), either of
/// which frees it; answer exactly once, from any thread. Box-owned; one
/// thread at a time. Pointers it lends are valid until the next call that
/// changes the same thing, or the answer.
///
/// Methods: `rgrpc_hook_get_kind`, `rgrpc_hook_method`, `rgrpc_hook_set_method`,
/// `rgrpc_hook_metadata`, `rgrpc_hook_add_metadata`,
/// `rgrpc_hook_remove_metadata`, `rgrpc_hook_timeout_ms`,
/// `rgrpc_hook_set_timeout_ms`, `rgrpc_hook_set_compression`,
/// `rgrpc_hook_set_wait_for_ready`, `rgrpc_hook_message`,
/// `rgrpc_hook_set_message`, `rgrpc_hook_status_code`,
/// `rgrpc_hook_status_details`, `rgrpc_hook_set_status`,
/// `rgrpc_hook_call_data`, `rgrpc_hook_set_call_data`,
/// `rgrpc_hook_last_error`, `rgrpc_hook_proceed`, `rgrpc_hook_fail`.
pub struct rgrpc_hook {
    _private: [u8; 0],
}

pub(crate) struct HookState {
    kind: rgrpc_hook_kind,
    ctx: Arc<CallContext>,
    payload: Payload,
    /// The changed method, NUL-terminated (START).
    method: Option<CString>,
    last_error: CString,
}

enum Payload {
    Start(CallStart, Reply<Result<CallStart, Status>>),
    Message(Bytes, Reply<Result<Bytes, Status>>),
    Status {
        code: Code,
        details: CString,
        trailers: Metadata,
        reply: Reply<Status>,
    },
}

impl Castable for rgrpc_hook {
    type Rust = HookState;
}

impl HookState {
    fn wrong(&mut self, what: &str) -> rgrpc_result {
        self.last_error = cstring(&format!("{what} (this is a {} hook)", kind_name(self.kind)));
        rgrpc_result::InvalidArgument
    }

    /// Applies `f` to a START hook's call; refused with `what` otherwise.
    fn change_start(&mut self, what: &str, f: impl FnOnce(&mut CallStart)) -> rgrpc_result {
        match &mut self.payload {
            Payload::Start(s, _) => {
                f(s);
                rgrpc_result::Ok
            }
            _ => self.wrong(what),
        }
    }

    /// The metadata a START (request) or STATUS (trailers) hook changes.
    fn metadata_mut(&mut self) -> Result<&mut Metadata, rgrpc_result> {
        if let Payload::Message(..) = self.payload {
            return Err(self.wrong("only START and STATUS hooks have metadata"));
        }
        match &mut self.payload {
            Payload::Start(s, _) => Ok(&mut s.opts.metadata),
            Payload::Status { trailers, .. } => Ok(trailers),
            Payload::Message(..) => unreachable!("checked above"),
        }
    }
}

fn kind_name(k: rgrpc_hook_kind) -> &'static str {
    match k {
        rgrpc_hook_kind::Start => "START",
        rgrpc_hook_kind::SendMessage => "SEND_MESSAGE",
        rgrpc_hook_kind::RecvMessage => "RECV_MESSAGE",
        rgrpc_hook_kind::Status => "STATUS",
    }
}

/// A status for `rgrpc_hook_fail` / `rgrpc_hook_set_status`: `code` (out
/// of range: UNKNOWN) and `details` (NULL: none; not UTF-8: replaced).
fn status_of(code: u32, details: *const c_char) -> (Code, CString) {
    let code = Code::from_u32(code).unwrap_or(Code::Unknown);
    if details.is_null() {
        return (code, CString::default());
    }
    // SAFETY: details is a NUL-terminated string per the header.
    let text = unsafe { std::ffi::CStr::from_ptr(details) }.to_string_lossy();
    (code, cstring(&text))
}

/// Which step `hook` is; `RGRPC_HOOK_KIND_START` for NULL.
#[no_mangle]
pub extern "C" fn rgrpc_hook_get_kind(hook: *const rgrpc_hook) -> rgrpc_hook_kind {
    boundary(|| {
        // SAFETY: NULL or a live hook.
        match unsafe { try_ref::<rgrpc_hook>(hook) } {
            Some(h) => h.kind,
            None => rgrpc_hook_kind::Start,
        }
    })
}

/// The call's method (`/package.Service/Method`): in a START hook as it
/// is now (after `rgrpc_hook_set_method`), in the others as the
/// application started it. Borrowed from the hook; `""` for NULL.
#[no_mangle]
pub extern "C" fn rgrpc_hook_method(hook: *const rgrpc_hook) -> *const c_char {
    boundary(|| {
        // SAFETY: NULL or a live hook.
        match unsafe { try_ref::<rgrpc_hook>(hook) } {
            Some(h) => match &h.method {
                Some(m) => m.as_ptr(),
                None => h.ctx.method_with_nul().as_ptr() as *const c_char,
            },
            None => c"".as_ptr(),
        }
    })
}

/// START: calls `method` instead (`/package.Service/Method`, copied). The
/// service config's settings for the new method apply. Returns
/// `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER`,
/// `RGRPC_RESULT_INVALID_UTF8` or `RGRPC_RESULT_INVALID_ARGUMENT` (not a
/// START hook, or not a method path).
#[no_mangle]
pub extern "C" fn rgrpc_hook_set_method(
    hook: *mut rgrpc_hook,
    method: *const c_char,
) -> rgrpc_result {
    boundary(|| {
        let h = try_mut_or_null!(rgrpc_hook, hook);
        let m = match str_or_error(&mut h.last_error, method, "method") {
            Ok(m) => m.to_string(),
            Err(e) => return e,
        };
        if let Err(e) = rgrpc_core::call::validate_method(&m) {
            h.last_error = cstring(&e);
            return rgrpc_result::InvalidArgument;
        }
        let c = cstring(&m);
        match &mut h.payload {
            Payload::Start(s, _) => {
                s.method = m;
                h.method = Some(c);
                rgrpc_result::Ok
            }
            _ => h.wrong("only a START hook may change the method"),
        }
    })
}

/// START: the metadata the call will send; STATUS: the trailing metadata
/// the application will see. Borrowed from the hook (valid until it is
/// changed or answered); NULL for the other hooks and for NULL.
#[no_mangle]
pub extern "C" fn rgrpc_hook_metadata(hook: *const rgrpc_hook) -> *const rgrpc_metadata {
    boundary(|| {
        // SAFETY: NULL or a live hook.
        let md = match unsafe { try_ref::<rgrpc_hook>(hook) }.map(|h| &h.payload) {
            Some(Payload::Start(s, _)) => &s.opts.metadata,
            Some(Payload::Status { trailers, .. }) => trailers,
            _ => return std::ptr::null(),
        };
        md as *const Metadata as *const rgrpc_metadata
    })
}

/// START: adds an entry to the metadata the call sends; STATUS: to the
/// trailing metadata the application sees. Same key and value rules as
/// `rgrpc_call_options_add_metadata` (copied). Returns `RGRPC_RESULT_OK`,
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_INVALID_UTF8`,
/// `RGRPC_RESULT_INVALID_METADATA` or `RGRPC_RESULT_INVALID_ARGUMENT`
/// (another hook); why in `rgrpc_hook_last_error`.
#[no_mangle]
pub extern "C" fn rgrpc_hook_add_metadata(
    hook: *mut rgrpc_hook,
    key: *const c_char,
    value: *const u8,
    value_len: usize,
) -> rgrpc_result {
    boundary(|| {
        let h = try_mut_or_null!(rgrpc_hook, hook);
        let key = match str_or_error(&mut h.last_error, key, "metadata key") {
            Ok(k) => k,
            Err(e) => return e,
        };
        // SAFETY: value is NULL or points to value_len readable bytes.
        let Some(v) = (unsafe { bytes_arg(value, value_len) }) else {
            h.last_error = cstring("value is NULL but value_len is not 0");
            return rgrpc_result::NullParameter;
        };
        let md = match h.metadata_mut() {
            Ok(md) => md,
            Err(e) => return e,
        };
        match md.add(key, v) {
            Ok(()) => rgrpc_result::Ok,
            Err(e) => {
                h.last_error = cstring(&e.to_string());
                rgrpc_result::InvalidMetadata
            }
        }
    })
}

/// START / STATUS: removes every entry with `key` (as
/// `rgrpc_hook_add_metadata`). Writes how many went to `*removed` (may be
/// NULL). Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER`,
/// `RGRPC_RESULT_INVALID_UTF8` or `RGRPC_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn rgrpc_hook_remove_metadata(
    hook: *mut rgrpc_hook,
    key: *const c_char,
    removed: *mut usize,
) -> rgrpc_result {
    boundary(|| {
        let h = try_mut_or_null!(rgrpc_hook, hook);
        let key = match str_or_error(&mut h.last_error, key, "metadata key") {
            Ok(k) => k,
            Err(e) => return e,
        };
        let md = match h.metadata_mut() {
            Ok(md) => md,
            Err(e) => return e,
        };
        let n = md.remove(key);
        if !removed.is_null() {
            write_out!(removed, n);
        }
        rgrpc_result::Ok
    })
}

/// START: milliseconds left before the call's deadline (0 when passed),
/// or -1 without a deadline; -1 for other hooks and NULL.
#[no_mangle]
pub extern "C" fn rgrpc_hook_timeout_ms(hook: *const rgrpc_hook) -> i64 {
    boundary(|| {
        // SAFETY: NULL or a live hook.
        match unsafe { try_ref::<rgrpc_hook>(hook) }.map(|h| &h.payload) {
            Some(Payload::Start(s, _)) => match s.opts.deadline {
                Some(d) => d
                    .saturating_duration_since(tokio::time::Instant::now())
                    .as_millis()
                    .min(i64::MAX as u128) as i64,
                None => -1,
            },
            _ => -1,
        }
    })
}

/// START: gives the call a deadline `timeout_ms` from now (< 0: no
/// deadline), replacing the one it had. Returns `RGRPC_RESULT_OK`,
/// `RGRPC_RESULT_NULL_PARAMETER` or `RGRPC_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn rgrpc_hook_set_timeout_ms(
    hook: *mut rgrpc_hook,
    timeout_ms: i64,
) -> rgrpc_result {
    boundary(|| {
        let h = try_mut_or_null!(rgrpc_hook, hook);
        let deadline = u64::try_from(timeout_ms)
            .ok()
            .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        h.change_start("only a START hook may change the deadline", |s| {
            s.opts.deadline = deadline
        })
    })
}

/// START: compresses the call's messages with `compression` (an
/// `rgrpc_compression` value), as `rgrpc_call_options_set_compression`.
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER` or
/// `RGRPC_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn rgrpc_hook_set_compression(
    hook: *mut rgrpc_hook,
    compression: u32,
) -> rgrpc_result {
    boundary(|| {
        let h = try_mut_or_null!(rgrpc_hook, hook);
        let Some(c) = Compression::from_u32(compression) else {
            h.last_error = cstring(&format!("{compression} is not an rgrpc_compression value"));
            return rgrpc_result::InvalidArgument;
        };
        h.change_start("only a START hook may change compression", |s| {
            s.opts.compression = Some(c)
        })
    })
}

/// START: sets wait-for-ready, as `rgrpc_call_options_set_wait_for_ready`.
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER` or
/// `RGRPC_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn rgrpc_hook_set_wait_for_ready(hook: *mut rgrpc_hook, wait: bool) -> rgrpc_result {
    boundary(|| {
        let h = try_mut_or_null!(rgrpc_hook, hook);
        h.change_start("only a START hook may change wait-for-ready", |s| {
            s.opts.wait_for_ready = Some(wait)
        })
    })
}

/// SEND_MESSAGE / RECV_MESSAGE: the message (serialized, uncompressed);
/// writes its length to `*len` (may be NULL). Borrowed from the hook
/// (valid until `rgrpc_hook_set_message` or the answer). NULL for other
/// hooks and NULL (`*len` 0); an empty message is a non-NULL pointer.
#[no_mangle]
pub extern "C" fn rgrpc_hook_message(hook: *const rgrpc_hook, len: *mut usize) -> *const u8 {
    boundary(|| {
        // SAFETY: NULL or a live hook.
        let m = match unsafe { try_ref::<rgrpc_hook>(hook) }.map(|h| &h.payload) {
            Some(Payload::Message(m, _)) => Some(m),
            _ => None,
        };
        if !len.is_null() {
            write_out!(len, m.map_or(0, |m| m.len()));
        }
        match m {
            Some(m) if m.is_empty() => c"".as_ptr() as *const u8,
            Some(m) => m.as_ptr(),
            None => std::ptr::null(),
        }
    })
}

/// SEND_MESSAGE / RECV_MESSAGE: replaces the message with `data[0..len]`
/// (copied; NULL allowed when len is 0). Returns `RGRPC_RESULT_OK`,
/// `RGRPC_RESULT_NULL_PARAMETER` or `RGRPC_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn rgrpc_hook_set_message(
    hook: *mut rgrpc_hook,
    data: *const u8,
    len: usize,
) -> rgrpc_result {
    boundary(|| {
        let h = try_mut_or_null!(rgrpc_hook, hook);
        // SAFETY: data is NULL or points to len readable bytes.
        let Some(d) = (unsafe { bytes_arg(data, len) }) else {
            h.last_error = cstring("data is NULL but len is not 0");
            return rgrpc_result::NullParameter;
        };
        match &mut h.payload {
            Payload::Message(m, _) => {
                *m = Bytes::copy_from_slice(d);
                rgrpc_result::Ok
            }
            _ => h.wrong("only message hooks have a message"),
        }
    })
}

/// STATUS: the status code the application will see;
/// `RGRPC_STATUS_CODE_UNKNOWN` for other hooks and NULL.
#[no_mangle]
pub extern "C" fn rgrpc_hook_status_code(hook: *const rgrpc_hook) -> rgrpc_status_code {
    boundary(|| {
        // SAFETY: NULL or a live hook.
        match unsafe { try_ref::<rgrpc_hook>(hook) }.map(|h| &h.payload) {
            Some(Payload::Status { code, .. }) => (*code).into(),
            _ => Code::Unknown.into(),
        }
    })
}

/// STATUS: the details text the application will see (UTF-8, borrowed
/// until changed or answered); `""` for other hooks and NULL.
#[no_mangle]
pub extern "C" fn rgrpc_hook_status_details(hook: *const rgrpc_hook) -> *const c_char {
    boundary(|| {
        // SAFETY: NULL or a live hook.
        match unsafe { try_ref::<rgrpc_hook>(hook) }.map(|h| &h.payload) {
            Some(Payload::Status { details, .. }) => details.as_ptr(),
            _ => c"".as_ptr(),
        }
    })
}

/// STATUS: replaces the code and details the application will see (the
/// trailing metadata stays; change it with the metadata functions).
/// `code` out of range becomes UNKNOWN; `details` NULL means none.
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER` or
/// `RGRPC_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn rgrpc_hook_set_status(
    hook: *mut rgrpc_hook,
    code: u32,
    details: *const c_char,
) -> rgrpc_result {
    boundary(|| {
        let h = try_mut_or_null!(rgrpc_hook, hook);
        let (c, d) = status_of(code, details);
        match &mut h.payload {
            Payload::Status { code, details, .. } => {
                *code = c;
                *details = d;
                rgrpc_result::Ok
            }
            _ => h.wrong("only a STATUS hook has a status (end a call with rgrpc_hook_fail)"),
        }
    })
}

/// Per-call data of a C interceptor: freed with the call.
struct CallData {
    ptr: UserData,
    destroy: rgrpc_destroy_cb,
}

impl Drop for CallData {
    fn drop(&mut self) {
        if let Some(d) = self.destroy {
            // SAFETY: the caller's destroy callback for its own pointer, once.
            unsafe { d(self.ptr.0) }
        }
    }
}

/// The interceptor's data for this call, as set by
/// `rgrpc_hook_set_call_data` in an earlier hook of the same call (NULL
/// until then, and for NULL). Each interceptor has its own.
#[no_mangle]
pub extern "C" fn rgrpc_hook_call_data(hook: *const rgrpc_hook) -> *mut c_void {
    boundary(|| {
        // SAFETY: NULL or a live hook.
        let Some(h) = (unsafe { try_ref::<rgrpc_hook>(hook) }) else {
            return std::ptr::null_mut();
        };
        let d = h.ctx.data();
        match d.as_ref().and_then(|d| d.downcast_ref::<CallData>()) {
            Some(cd) => cd.ptr.0,
            None => std::ptr::null_mut(),
        }
    })
}

/// Keeps `data` with this call for this interceptor (readable from its
/// later hooks with `rgrpc_hook_call_data`). `destroy` (may be NULL) is
/// called once with `data` when the call is freed by the library (after
/// its STATUS hook and the application's release), or when replaced by
/// another `rgrpc_hook_set_call_data`, on any thread. Returns
/// `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER` (hook NULL).
#[no_mangle]
pub extern "C" fn rgrpc_hook_set_call_data(
    hook: *mut rgrpc_hook,
    data: *mut c_void,
    destroy: rgrpc_destroy_cb,
) -> rgrpc_result {
    boundary(|| {
        let h = try_mut_or_null!(rgrpc_hook, hook);
        let old = h.ctx.data().replace(Box::new(CallData {
            ptr: UserData(data),
            destroy,
        }));
        // The old data's destroy runs outside the lock.
        drop(old);
        rgrpc_result::Ok
    })
}

/// Why the last refused call on `hook` was refused (`""` if none, or for
/// NULL). Borrowed until the next call on `hook`.
#[no_mangle]
pub extern "C" fn rgrpc_hook_last_error(hook: *const rgrpc_hook) -> *const c_char {
    boundary(|| {
        // SAFETY: NULL or a live hook.
        match unsafe { try_ref::<rgrpc_hook>(hook) } {
            Some(h) => h.last_error.as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

fn take_hook(hook: *mut rgrpc_hook) -> Option<Box<HookState>> {
    if hook.is_null() {
        return None;
    }
    // SAFETY: hook is a live hook owned by the caller, consumed here.
    Some(unsafe { Box::from_raw(hook as *mut HookState) })
}

fn status_from(code: Code, details: &CString, trailers: Metadata) -> Status {
    Status::with_trailers(code, details.to_string_lossy().into_owned(), trailers)
}

/// Answers `hook`: the call goes on with what was read and changed.
/// Frees `hook`. Returns `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER`.
/// Any thread, once per hook.
#[no_mangle]
pub extern "C" fn rgrpc_hook_proceed(hook: *mut rgrpc_hook) -> rgrpc_result {
    boundary(|| {
        let Some(h) = take_hook(hook) else {
            return rgrpc_result::NullParameter;
        };
        match h.payload {
            Payload::Start(s, r) => r.send(Ok(s)),
            Payload::Message(m, r) => r.send(Ok(m)),
            Payload::Status {
                code,
                details,
                trailers,
                reply,
            } => reply.send(status_from(code, &details, trailers)),
        }
        rgrpc_result::Ok
    })
}

/// Answers `hook` by ending the call with `code` (out of range or OK:
/// UNKNOWN, since a hook cannot end a call successfully) and `details`
/// (UTF-8, may be NULL). From a START hook nothing is sent; from a message
/// hook the stream is cancelled; from a STATUS hook this status replaces
/// the call's (its trailing metadata stays; OK allowed there). Frees
/// `hook`. Returns `RGRPC_RESULT_OK` or `RGRPC_RESULT_NULL_PARAMETER`.
/// Any thread, once per hook.
#[no_mangle]
pub extern "C" fn rgrpc_hook_fail(
    hook: *mut rgrpc_hook,
    code: u32,
    details: *const c_char,
) -> rgrpc_result {
    boundary(|| {
        let Some(h) = take_hook(hook) else {
            return rgrpc_result::NullParameter;
        };
        let (c, d) = status_of(code, details);
        let err = || {
            let c = if c == Code::Ok { Code::Unknown } else { c };
            status_from(c, &d, Metadata::new())
        };
        match h.payload {
            Payload::Start(_, r) => r.send(Err(err())),
            Payload::Message(_, r) => r.send(Err(err())),
            Payload::Status {
                trailers, reply, ..
            } => reply.send(status_from(c, &d, trailers)),
        }
        rgrpc_result::Ok
    })
}
