//! Static NUL-terminated names for C, made once from the core's names (the
//! only table of them): status codes, connectivity states, option keys.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

/// The C strings of one enum's names, built on first use.
pub(crate) struct NameTable(OnceLock<Vec<CString>>);

impl NameTable {
    pub(crate) const fn new() -> Self {
        NameTable(OnceLock::new())
    }
}

/// The static C string of `v`'s name, where `all` lists every value in
/// numeric order and `name` is the core's name function.
pub(crate) fn static_name<T: Copy + PartialEq>(
    table: &'static NameTable,
    all: &[T],
    v: T,
    name: fn(T) -> &'static str,
) -> *const c_char {
    let names = table.0.get_or_init(|| {
        all.iter()
            .map(|&x| CString::new(name(x)).expect("names have no NUL"))
            .collect()
    });
    let i = all.iter().position(|&x| x == v).expect("v is in all");
    names[i].as_ptr()
}

/// Lends out text the core keeps NUL-terminated (`Status::message_with_nul`,
/// `Call::response_encoding_with_nul`): the pointer is valid as long as the
/// text is.
pub(crate) fn lend_nul_terminated(s: &str) -> *const c_char {
    std::ffi::CStr::from_bytes_with_nul(s.as_bytes())
        .expect("the core ends the text with its only NUL")
        .as_ptr()
}
