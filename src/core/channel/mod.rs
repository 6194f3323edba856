//! Channels: a target, options, and one lazily made HTTP/2 connection shared
//! by all calls. `close` cancels active calls and refuses new ones.

#[allow(clippy::module_inception)]
mod channel;
pub(crate) mod connection;
pub mod options;
pub mod target;

pub(crate) use channel::ChannelInner;
pub use channel::{Channel, ChannelError};
pub use options::{ChannelOptions, OptionError, OptionValue};
