//! `rgrpc_status`: the final status of an RPC; `rgrpc_status_code` names.

use super::boundary::boundary;
use super::handle::{free_arc, try_ref, Castable};
use super::metadata::rgrpc_metadata;
use crate::core::{Code, Status};
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
pub extern "C" fn rgrpc_status_get_code(status: *const rgrpc_status) -> Code {
    boundary(|| {
        // SAFETY: status is NULL or a live rgrpc_status.
        unsafe { try_ref::<rgrpc_status>(status) }.map_or(Code::Unknown, |s| s.code())
    })
}

/// The status details (UTF-8, NUL-terminated; `""` when the server sent
/// none, and for NULL). Valid as long as the status is.
#[no_mangle]
pub extern "C" fn rgrpc_status_details(status: *const rgrpc_status) -> *const c_char {
    boundary(|| {
        // SAFETY: status is NULL or a live rgrpc_status.
        match unsafe { try_ref::<rgrpc_status>(status) } {
            Some(s) => s.message_cstr().as_ptr(),
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
        Some(c) => code_cname(c).as_ptr(),
        None => c"UNKNOWN_CODE".as_ptr(),
    })
}

fn code_cname(c: Code) -> &'static std::ffi::CStr {
    match c {
        Code::Ok => c"OK",
        Code::Cancelled => c"CANCELLED",
        Code::Unknown => c"UNKNOWN",
        Code::InvalidArgument => c"INVALID_ARGUMENT",
        Code::DeadlineExceeded => c"DEADLINE_EXCEEDED",
        Code::NotFound => c"NOT_FOUND",
        Code::AlreadyExists => c"ALREADY_EXISTS",
        Code::PermissionDenied => c"PERMISSION_DENIED",
        Code::ResourceExhausted => c"RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => c"FAILED_PRECONDITION",
        Code::Aborted => c"ABORTED",
        Code::OutOfRange => c"OUT_OF_RANGE",
        Code::Unimplemented => c"UNIMPLEMENTED",
        Code::Internal => c"INTERNAL",
        Code::Unavailable => c"UNAVAILABLE",
        Code::DataLoss => c"DATA_LOSS",
        Code::Unauthenticated => c"UNAUTHENTICATED",
    }
}
