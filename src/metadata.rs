//! `rgrpc_metadata`: a read-only view of received metadata.

use super::boundary::boundary;
use super::error::rgrpc_result;
use super::handle::{try_ref, try_ref_or_null, try_str, write_out, Castable};
use rgrpc_core::Metadata;
use std::ffi::c_char;

/// Metadata received from the server (initial or trailing): an ordered
/// list of key/value pairs. Keys are lowercase ASCII; values of keys ending
/// in `-bin` are arbitrary bytes (already base64-decoded), other values
/// printable ASCII. Values are not NUL-terminated: use the length.
///
/// Always borrowed from the call or status it came from, read-only, valid
/// as long as that object; never freed by the caller. Immutable; may be
/// read from any thread. (Metadata to *send* is added to
/// `rgrpc_call_options`.)
///
/// Methods: `rgrpc_metadata_len`, `rgrpc_metadata_get`, `rgrpc_metadata_find`.
pub struct rgrpc_metadata {
    _private: [u8; 0],
}

impl Castable for rgrpc_metadata {
    type Rust = Metadata;
}

/// Number of entries; 0 for NULL.
#[no_mangle]
pub extern "C" fn rgrpc_metadata_len(md: *const rgrpc_metadata) -> usize {
    boundary(|| {
        // SAFETY: md is NULL or a live rgrpc_metadata.
        unsafe { try_ref::<rgrpc_metadata>(md) }.map_or(0, |m| m.len())
    })
}

/// Entry `index` (0-based, in the order received).
///
/// `key_out` receives a NUL-terminated key; `value_out`/`value_len_out` the
/// value bytes. All borrowed: valid as long as `md`. Any out-pointer may be
/// NULL if not wanted. Returns `RGRPC_RESULT_OK`,
/// `RGRPC_RESULT_NULL_PARAMETER` (md NULL) or `RGRPC_RESULT_NOT_FOUND`
/// (index out of range; outputs untouched).
#[no_mangle]
pub extern "C" fn rgrpc_metadata_get(
    md: *const rgrpc_metadata,
    index: usize,
    key_out: *mut *const c_char,
    value_out: *mut *const u8,
    value_len_out: *mut usize,
) -> rgrpc_result {
    boundary(|| {
        let m = try_ref_or_null!(rgrpc_metadata, md);
        let (Some(k), Some((_, v))) = (m.key_with_nul(index), m.get(index)) else {
            return rgrpc_result::NotFound;
        };
        if !key_out.is_null() {
            write_out!(key_out, k.as_ptr() as *const c_char);
        }
        if !value_out.is_null() {
            write_out!(value_out, v.as_ptr());
        }
        if !value_len_out.is_null() {
            write_out!(value_len_out, v.len());
        }
        rgrpc_result::Ok
    })
}

/// The first value for `key` (exact, lowercase).
///
/// `value_out`/`value_len_out` (either may be NULL) receive borrowed bytes
/// valid as long as `md`. Returns `RGRPC_RESULT_OK`,
/// `RGRPC_RESULT_NOT_FOUND`, `RGRPC_RESULT_NULL_PARAMETER` (md or key NULL)
/// or `RGRPC_RESULT_INVALID_UTF8`.
#[no_mangle]
pub extern "C" fn rgrpc_metadata_find(
    md: *const rgrpc_metadata,
    key: *const c_char,
    value_out: *mut *const u8,
    value_len_out: *mut usize,
) -> rgrpc_result {
    boundary(|| {
        let m = try_ref_or_null!(rgrpc_metadata, md);
        let key = try_str!(key);
        let Some(v) = m.find(key) else {
            return rgrpc_result::NotFound;
        };
        if !value_out.is_null() {
            write_out!(value_out, v.as_ptr());
        }
        if !value_len_out.is_null() {
            write_out!(value_len_out, v.len());
        }
        rgrpc_result::Ok
    })
}
