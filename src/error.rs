//! `rgrpc_result` (did the API call work?), its static names, and
//! `rgrpc_error`, the message object for failures where no object exists yet.

use super::boundary::boundary;
use super::handle::{free_boxed, to_boxed, try_ref, Castable};
use std::ffi::{c_char, CString};

/// Whether an API function itself worked. `RGRPC_RESULT_OK` is 0 so
/// `if (rc)` tests for failure; every other value is 7000 or above so it
/// cannot be mistaken for a gRPC status code (`rgrpc_status_code`, 0..16),
/// which is the outcome of an RPC and a separate code space.
///
/// Functions taking a result value accept it as `uint32_t`.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum rgrpc_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 7001,
    /// An argument is out of range or malformed (see the function's doc).
    InvalidArgument = 7002,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 7003,
    /// The channel target could not be parsed.
    InvalidTarget = 7004,
    /// The method is not a valid gRPC path (`/package.Service/Method`, printable ASCII, no spaces).
    InvalidMethod = 7005,
    /// A metadata key or value was refused.
    InvalidMetadata = 7006,
    /// A channel option key is not known.
    UnknownOption = 7007,
    /// A channel option was given a value of the wrong type or range.
    InvalidOptionValue = 7008,
    /// A known gRPC feature that this version does not support.
    Unsupported = 7009,
    /// The channel is closed.
    ChannelClosed = 7010,
    /// The call has ended (or the server closed the stream); get its status with `rgrpc_call_finish`.
    CallEnded = 7011,
    /// No more messages: the response stream ended (normally or not); get the status with `rgrpc_call_finish`.
    EndOfStream = 7012,
    /// The sending side of the call is already closed.
    SendClosed = 7013,
    /// Another thread is in the same kind of operation on this call, or messages go to a message callback.
    Busy = 7014,
    /// A wait timed out.
    Timeout = 7015,
    /// The RPC ended with a non-OK status; the status object says which.
    RpcFailed = 7016,
    /// The requested item does not exist.
    NotFound = 7017,
    /// The runtime already runs; its settings can no longer change.
    AlreadyStarted = 7018,
    /// The runtime could not start, or a blocking call was made where blocking is impossible.
    Runtime = 7019,
    /// A bug inside rgrpc was caught at the API boundary (a Rust panic).
    Panic = 7020,
    /// The operation was cancelled by the application.
    Cancelled = 7021,
}

impl rgrpc_result {
    fn from_u32(v: u32) -> Option<rgrpc_result> {
        use rgrpc_result::*;
        const ALL: [rgrpc_result; 22] = [
            Ok,
            NullParameter,
            InvalidArgument,
            InvalidUtf8,
            InvalidTarget,
            InvalidMethod,
            InvalidMetadata,
            UnknownOption,
            InvalidOptionValue,
            Unsupported,
            ChannelClosed,
            CallEnded,
            EndOfStream,
            SendClosed,
            Busy,
            Timeout,
            RpcFailed,
            NotFound,
            AlreadyStarted,
            Runtime,
            Panic,
            Cancelled,
        ];
        ALL.iter().copied().find(|r| *r as u32 == v)
    }

    fn name(self) -> &'static std::ffi::CStr {
        use rgrpc_result::*;
        match self {
            Ok => c"RGRPC_RESULT_OK",
            NullParameter => c"RGRPC_RESULT_NULL_PARAMETER",
            InvalidArgument => c"RGRPC_RESULT_INVALID_ARGUMENT",
            InvalidUtf8 => c"RGRPC_RESULT_INVALID_UTF8",
            InvalidTarget => c"RGRPC_RESULT_INVALID_TARGET",
            InvalidMethod => c"RGRPC_RESULT_INVALID_METHOD",
            InvalidMetadata => c"RGRPC_RESULT_INVALID_METADATA",
            UnknownOption => c"RGRPC_RESULT_UNKNOWN_OPTION",
            InvalidOptionValue => c"RGRPC_RESULT_INVALID_OPTION_VALUE",
            Unsupported => c"RGRPC_RESULT_UNSUPPORTED",
            ChannelClosed => c"RGRPC_RESULT_CHANNEL_CLOSED",
            CallEnded => c"RGRPC_RESULT_CALL_ENDED",
            EndOfStream => c"RGRPC_RESULT_END_OF_STREAM",
            SendClosed => c"RGRPC_RESULT_SEND_CLOSED",
            Busy => c"RGRPC_RESULT_BUSY",
            Timeout => c"RGRPC_RESULT_TIMEOUT",
            RpcFailed => c"RGRPC_RESULT_RPC_FAILED",
            NotFound => c"RGRPC_RESULT_NOT_FOUND",
            AlreadyStarted => c"RGRPC_RESULT_ALREADY_STARTED",
            Runtime => c"RGRPC_RESULT_RUNTIME",
            Panic => c"RGRPC_RESULT_PANIC",
            Cancelled => c"RGRPC_RESULT_CANCELLED",
        }
    }

    fn description(self) -> &'static std::ffi::CStr {
        use rgrpc_result::*;
        match self {
            Ok => c"success",
            NullParameter => c"a required pointer argument was NULL",
            InvalidArgument => c"an argument is out of range or malformed",
            InvalidUtf8 => c"a string argument is not valid UTF-8",
            InvalidTarget => c"the channel target could not be parsed",
            InvalidMethod => c"the method is not a valid gRPC path: it must start with '/' and contain only printable ASCII without spaces, e.g. \"/package.Service/Method\"",
            InvalidMetadata => c"a metadata key or value was refused",
            UnknownOption => c"unknown channel option key",
            InvalidOptionValue => c"a channel option was given a value of the wrong type or out of range",
            Unsupported => c"a gRPC feature that this version of rgrpc does not support yet",
            ChannelClosed => c"the channel is closed",
            CallEnded => c"the call has ended; rgrpc_call_finish gives its status",
            EndOfStream => c"no more messages; rgrpc_call_finish gives the call's status",
            SendClosed => c"the sending side of the call is already closed",
            Busy => c"another thread is in the same operation on this call, or its messages go to a message callback",
            Timeout => c"timed out",
            RpcFailed => c"the RPC ended with a non-OK status",
            NotFound => c"not found",
            AlreadyStarted => c"the runtime is already running",
            Runtime => c"the runtime could not start, or blocking is impossible on this thread",
            Panic => c"internal error in rgrpc (caught panic)",
            Cancelled => c"cancelled by the application",
        }
    }
}

/// The name of a result code, e.g. `"RGRPC_RESULT_TIMEOUT"`; `"UNKNOWN"`
/// for a number that is not a result code.
///
/// Returns a static string: never NULL, never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_result_name(result: u32) -> *const c_char {
    boundary(|| match rgrpc_result::from_u32(result) {
        Some(r) => r.name().as_ptr(),
        None => c"UNKNOWN".as_ptr(),
    })
}

/// A one-sentence English description of a result code, for messages.
///
/// Returns a static string: never NULL, never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_result_str(result: u32) -> *const c_char {
    boundary(|| match rgrpc_result::from_u32(result) {
        Some(r) => r.description().as_ptr(),
        None => c"not an rgrpc_result value".as_ptr(),
    })
}

/// Details of a failure reported by a function that creates an object
/// (there is no object yet to hold the message).
///
/// Owned by the caller: free with `rgrpc_error_free`. Immutable; may be read
/// from any thread.
///
/// Methods: `rgrpc_error_result`, `rgrpc_error_message`, `rgrpc_error_free`.
pub struct rgrpc_error {
    _private: [u8; 0],
}

pub(crate) struct ErrorObj {
    result: rgrpc_result,
    message: CString,
}

impl Castable for rgrpc_error {
    type Rust = ErrorObj;
}

/// Makes a C string from a message, dropping any NUL bytes.
pub(crate) fn cstring(msg: &str) -> CString {
    CString::new(msg.replace('\0', "")).unwrap_or_default()
}

/// Writes an error object to `out` when `out` is not NULL.
pub(crate) fn set_error(
    out: *mut *mut rgrpc_error,
    result: rgrpc_result,
    msg: &str,
) -> rgrpc_result {
    if !out.is_null() {
        let e = to_boxed::<rgrpc_error>(ErrorObj {
            result,
            message: cstring(msg),
        });
        // SAFETY: out is non-NULL and, per the header, points to writable storage.
        unsafe { *out = e };
    }
    result
}

/// The result code of an error. `RGRPC_RESULT_NULL_PARAMETER` for NULL.
///
/// Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_error_result(error: *const rgrpc_error) -> rgrpc_result {
    boundary(|| {
        // SAFETY: error is NULL or a live rgrpc_error.
        match unsafe { try_ref::<rgrpc_error>(error) } {
            Some(e) => e.result,
            None => rgrpc_result::NullParameter,
        }
    })
}

/// The message of an error (UTF-8, NUL-terminated).
///
/// Borrowed: valid until `rgrpc_error_free(error)`. Returns `""` for NULL.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_error_message(error: *const rgrpc_error) -> *const c_char {
    boundary(|| {
        // SAFETY: error is NULL or a live rgrpc_error.
        match unsafe { try_ref::<rgrpc_error>(error) } {
            Some(e) => e.message.as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

/// Frees an error. NULL is a no-op; freeing twice is undefined.
#[no_mangle]
pub extern "C" fn rgrpc_error_free(error: *mut rgrpc_error) {
    boundary(|| {
        // SAFETY: error is NULL or a live rgrpc_error owned by the caller.
        unsafe { free_boxed::<rgrpc_error>(error) }
    })
}
