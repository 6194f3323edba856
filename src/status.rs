//! `rgrpc_status`: the final status of an RPC; `rgrpc_status_code` names.

use super::boundary::boundary;
use super::handle::{free_arc, try_ref, Castable};
use super::metadata::rgrpc_metadata;
use super::names::lend_nul_terminated;
use rgrpc_core::{Code, Status};
use std::ffi::c_char;

/// The final status of an RPC: code, details text, trailing metadata.
///
/// Behind it is an `Arc` (reference-counted) immutable object: read it
/// from any thread. A status returned through an out-parameter is owned by
/// the caller (free with `rgrpc_status_free`); one passed to a callback is
/// borrowed for the duration of the callback.
///
/// Methods: `rgrpc_status_get_code`, `rgrpc_status_details`,
/// `rgrpc_status_trailing_metadata`, `rgrpc_status_free`.
pub struct rgrpc_status {
    _private: [u8; 0],
}

impl Castable for rgrpc_status {
    type Rust = Status;
}

/// The status code. `RGRPC_STATUS_CODE_UNKNOWN` for NULL.
#[no_mangle]
pub extern "C" fn rgrpc_status_get_code(status: *const rgrpc_status) -> rgrpc_status_code {
    boundary(|| {
        // SAFETY: status is NULL or a live rgrpc_status.
        unsafe { try_ref::<rgrpc_status>(status) }
            .map_or(rgrpc_status_code::Unknown, |s| s.code().into())
    })
}

/// The status details (UTF-8, NUL-terminated; `""` when the server sent
/// none, and for NULL). Valid as long as the status is.
#[no_mangle]
pub extern "C" fn rgrpc_status_details(status: *const rgrpc_status) -> *const c_char {
    boundary(|| {
        // SAFETY: status is NULL or a live rgrpc_status.
        match unsafe { try_ref::<rgrpc_status>(status) } {
            Some(s) => lend_nul_terminated(s.message_with_nul()),
            None => c"".as_ptr(),
        }
    })
}

/// The trailing metadata the server sent (without `grpc-status` and
/// `grpc-message`). Borrowed: valid as long as the status is; do not free.
/// NULL for NULL.
#[no_mangle]
pub extern "C" fn rgrpc_status_trailing_metadata(
    status: *const rgrpc_status,
) -> *const rgrpc_metadata {
    boundary(|| {
        // SAFETY: status is NULL or a live rgrpc_status.
        match unsafe { try_ref::<rgrpc_status>(status) } {
            Some(s) => s.trailers() as *const _ as *const rgrpc_metadata,
            None => std::ptr::null(),
        }
    })
}

/// Releases a status obtained through an out-parameter. NULL is a no-op;
/// never free a status passed to a callback.
#[no_mangle]
pub extern "C" fn rgrpc_status_free(status: *const rgrpc_status) {
    boundary(|| {
        // SAFETY: status is NULL or an owned rgrpc_status reference.
        unsafe { free_arc::<rgrpc_status>(status) }
    })
}

/// The canonical name of a gRPC status code, e.g. `"DEADLINE_EXCEEDED"`;
/// `"UNKNOWN_CODE"` for numbers above 16.
///
/// Returns a static string: never NULL, never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_status_code_name(code: u32) -> *const c_char {
    boundary(|| match Code::from_u32(code) {
        Some(c) => lend_nul_terminated(c.name_with_nul()),
        None => c"UNKNOWN_CODE".as_ptr(),
    })
}

/// A gRPC status code, numbered exactly as the gRPC specification
/// (`doc/statuscodes.md` in the grpc/grpc repository): 0 OK ...
/// 16 UNAUTHENTICATED.
///
/// This is the outcome of an RPC. It is a separate code space from
/// `rgrpc_result`, which says whether an API function itself worked.
/// Names: `rgrpc_status_code_name`.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum rgrpc_status_code {
    /// Not an error; returned on success.
    Ok = 0,
    /// The operation was cancelled, typically by the caller.
    Cancelled = 1,
    /// Unknown error (also: a status that could not be parsed).
    Unknown = 2,
    /// The client specified an invalid argument.
    InvalidArgument = 3,
    /// The deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// Some requested entity was not found.
    NotFound = 5,
    /// The entity that a client attempted to create already exists.
    AlreadyExists = 6,
    /// The caller does not have permission to execute the operation.
    PermissionDenied = 7,
    /// Some resource has been exhausted (also: a message exceeded a size limit).
    ResourceExhausted = 8,
    /// The system is not in a state required for the operation.
    FailedPrecondition = 9,
    /// The operation was aborted.
    Aborted = 10,
    /// The operation was attempted past the valid range.
    OutOfRange = 11,
    /// The operation is not implemented or not supported.
    Unimplemented = 12,
    /// Internal error (also: protocol violations by the server).
    Internal = 13,
    /// The service is currently unavailable (also: connection failures).
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The request does not have valid authentication credentials.
    Unauthenticated = 16,
}

impl From<Code> for rgrpc_status_code {
    /// The C value of a core code: an exhaustive match, so a code added to
    /// the core fails to compile here until the header has it too.
    fn from(c: Code) -> Self {
        use rgrpc_status_code as C;
        match c {
            Code::Ok => C::Ok,
            Code::Cancelled => C::Cancelled,
            Code::Unknown => C::Unknown,
            Code::InvalidArgument => C::InvalidArgument,
            Code::DeadlineExceeded => C::DeadlineExceeded,
            Code::NotFound => C::NotFound,
            Code::AlreadyExists => C::AlreadyExists,
            Code::PermissionDenied => C::PermissionDenied,
            Code::ResourceExhausted => C::ResourceExhausted,
            Code::FailedPrecondition => C::FailedPrecondition,
            Code::Aborted => C::Aborted,
            Code::OutOfRange => C::OutOfRange,
            Code::Unimplemented => C::Unimplemented,
            Code::Internal => C::Internal,
            Code::Unavailable => C::Unavailable,
            Code::DataLoss => C::DataLoss,
            Code::Unauthenticated => C::Unauthenticated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_codes_are_the_core_numbers_and_names() {
        for c in Code::ALL {
            assert_eq!(rgrpc_status_code::from(c) as u32, c as u32);
            // SAFETY: the name functions return static NUL-terminated text.
            let name = unsafe { std::ffi::CStr::from_ptr(rgrpc_status_code_name(c as u32)) };
            assert_eq!(name.to_str().unwrap(), c.name());
        }
    }
}
