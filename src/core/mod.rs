//! The safe Rust core of rgrpc: no raw pointers, no C types.

pub mod call;
pub mod channel;
pub mod codec;
pub mod credentials;
pub mod metadata;
pub mod rt;
pub mod status;
pub(crate) mod sync;

pub use call::{Call, CallError, CallOptions, Message, SendFlags};
pub use channel::{Channel, ChannelOptions};
pub use metadata::Metadata;
pub use status::{Code, Status};

/// The library version (from Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
