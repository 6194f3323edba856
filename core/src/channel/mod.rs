//! Channels: a target, options, and one lazily made HTTP/2 connection shared
//! by all calls. `close` cancels active calls and refuses new ones.

#![forbid(unsafe_code)]

pub mod backoff;
#[allow(clippy::module_inception)]
mod channel;
pub(crate) mod connection;
mod driver;
pub(crate) mod lifecycle;
pub(crate) mod nosigpipe;
pub mod options;
pub mod state;
pub mod target;

pub(crate) use channel::{ActiveCall, ChannelInner};
pub use channel::{Channel, ChannelError};
pub use lifecycle::{LifecycleConfig, StateCallback};
pub use options::{ChannelOptions, OptionError, OptionValue};
pub use state::ConnectivityState;
