//! rgrpc-core: the safe Rust core of rgrpc — no raw pointers, no C types.
//!
//! Channels, calls, the message codec, credentials and the background
//! runtime, usable and tested from Rust on its own. The C ABI crate
//! (`rgrpc`, the repository root) is a thin layer over this one. Unsafe
//! code is denied everywhere but [`sys`] (socket calls and the signal mask
//! libc offers no safe form of, and the async mutex's cell); each other
//! module forbids it. See `ARCHITECTURE.md` for the map of modules.

#![deny(unsafe_code)]

pub mod call;
pub mod channel;
pub mod codec;
pub mod completion;
pub mod credentials;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod log;
pub mod metadata;
pub mod queue;
pub mod rt;
mod shutdown;
pub mod status;
pub(crate) mod sync;
#[allow(unsafe_code)]
pub(crate) mod sys;

pub use call::{Call, CallError, CallOptions, Message, SendFlags, StartError};
pub use channel::{Channel, ChannelOptions};
pub use metadata::Metadata;
pub use shutdown::{shutdown, ShutdownError};
pub use status::{Code, Status};

/// The library version (from Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
