//! Static NUL-terminated text for C, lent from the core without copying:
//! the names of status codes, connectivity states and option keys (the
//! core keeps each with its NUL: nothing is allocated, so nothing is left
//! for `rgrpc_shutdown` to free and every pointer stays valid), and text
//! that objects keep NUL-terminated.

use std::ffi::c_char;

/// Lends out text the core keeps NUL-terminated (`Code::name_with_nul`,
/// `Status::message_with_nul`, `Call::response_encoding_with_nul`, ...):
/// the pointer is valid as long as the text is (for names: always).
pub(crate) fn lend_nul_terminated(s: &str) -> *const c_char {
    std::ffi::CStr::from_bytes_with_nul(s.as_bytes())
        .expect("the core ends the text with its only NUL")
        .as_ptr()
}
