//! rgrpc: a gRPC client library with a C API.
//!
//! The crate has two layers:
//!
//! * [`core`] — safe Rust that knows nothing of C: channels (target parsing,
//!   connection), calls (state machine, deadline, metadata, framing, status),
//!   and the background tokio runtime. It is usable and tested from Rust.
//! * [`ffi`] — the C ABI (`include/rgrpc.h` is generated from it by cbindgen):
//!   thin functions that validate arguments, call the core and convert back.
//!
//! See `README.md` for the C API and `../shared/design.md` for the rules.

pub mod core;
pub mod ffi;
