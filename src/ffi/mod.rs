//! The C ABI. `include/rgrpc.h` is generated from this module by cbindgen.
//! Only this module has `extern "C"`, raw pointers and `unsafe`.

// C type names (`rgrpc_call`) are the API; the C caller passes raw
// pointers to every function, which validates them (NULL -> an error code)
// and dereferences only under the header's contract.
#![allow(non_camel_case_types)]
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod boundary;
pub mod buffer;
pub mod call;
pub mod callback;
pub mod channel;
pub mod connectivity;
pub mod credentials;
pub mod error;
pub mod handle;
pub mod metadata;
pub mod runtime;
pub mod status;
pub mod version;
