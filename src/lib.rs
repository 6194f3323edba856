//! rgrpc: a gRPC client library with a C API — the C ABI crate.
//!
//! This crate builds `librgrpc.{so,a}` and is the only input of cbindgen
//! for `include/rgrpc.h` (`cargo run -p rgrpc-gen-header`). It is thin:
//! every function validates its arguments, calls the safe core
//! ([`rgrpc_core`], in `core/`), and converts the result back to C types.
//! Only this crate has `extern "C"`, raw pointers and handle conversion.
//!
//! See `ARCHITECTURE.md` for the layers and `README.md` for the C API.

// C type names (`rgrpc_call`) are the API; the C caller passes raw
// pointers to every function, which validates them (NULL -> an error code)
// and dereferences only under the header's contract.
#![allow(non_camel_case_types)]
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod boundary;
pub mod buffer;
pub mod call;
pub mod call_options;
pub mod callback;
pub mod channel;
pub mod connectivity;
pub mod credentials;
pub mod error;
pub mod handle;
pub mod intercept;
pub mod log;
pub mod metadata;
mod names;
pub mod queue;
pub mod runtime;
pub mod status;
pub mod unary;
pub mod version;
