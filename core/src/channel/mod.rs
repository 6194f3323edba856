//! Channels: a target, options, and the machinery that turns them into
//! connections for calls — resolver → load-balancing policy → subchannels —
//! with the connectivity state the application sees. `close` cancels
//! active calls and refuses new ones.
//!
//! * [`channel`] — the `Channel` object: creation, close, connectivity API.
//! * `calls` — the channel's active calls (cancelled on close; the idle
//!   timer and keepalive read their counts).
//! * `connectivity` — the channel's state, waiters and ordered subscribers.
//! * `control` — runs the resolver for the policy, and the idle timer.
//! * `resolver` — target to endpoints (DNS through hickory-resolver).
//! * `policy` — load-balancing policies and pickers (`pick_first`,
//!   `round_robin`).
//! * `subchannel` — one endpoint: dial, TLS, HTTP/2, its own state and
//!   backoff.
//! * `service_config` — the service config (`grpc.service_config` JSON):
//!   load-balancing choice, per-method settings, retry throttling.
//! * `connection` — one HTTP/2 connection: handshakes, its task, its end.
//! * `proxy` — HTTP CONNECT proxies: which one (option or environment,
//!   `no_proxy`), and the tunnel through it (C-core's rules).
//! * `driver` — the connection future shared by its task and blocked callers.
//! * `keepalive` — PINGs per connection, the channel's period.
//! * [`backoff`] — reconnect backoff (`doc/connection-backoff.md` in grpc/grpc).
//! * `nosigpipe` — socket writes that never raise SIGPIPE.
//! * [`ready`] — the ready future (wait for READY, or a callback).
//! * [`options`], [`state`], [`target`] — channel options by grpcio's key
//!   names, the five connectivity states, target strings.

#![forbid(unsafe_code)]

pub mod backoff;
pub(crate) mod calls;
#[allow(clippy::module_inception)]
mod channel;
pub(crate) mod connection;
pub(crate) mod connectivity;
pub(crate) mod control;
mod driver;
pub(crate) mod keepalive;
pub(crate) mod nosigpipe;
pub mod options;
pub(crate) mod policy;
pub(crate) mod proxy;
pub mod ready;
pub(crate) mod resolver;
pub(crate) mod service_config;
pub mod state;
pub(crate) mod subchannel;
pub mod target;

pub(crate) use calls::ActiveCall;
pub(crate) use channel::close_all;
pub(crate) use channel::ChannelInner;
pub use channel::{Channel, ChannelError};
pub use connectivity::StateCallback;
pub use options::{ChannelOptions, ConnectionConfig, MetadataLimits, OptionError, OptionValue};
pub use ready::{ReadyCallback, ReadyFuture, ReadyOutcome};
pub use state::ConnectivityState;
