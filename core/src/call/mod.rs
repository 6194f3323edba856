//! The call: what the application holds, made of attempts.
//!
//! * [`options`] — per-call settings, send flags, messages to send, and the
//!   call's fixed definition ([`options::CallSpec`]).
//! * [`error`] — why a call operation or a call start failed.
//! * [`state`] — the application's view of one call: send and receive
//!   sides (busy flags, messages kept for `recv`), the final status (set
//!   once), deadline, cancel, done callbacks.
//! * [`attempt`] — the call's HTTP/2 stream: opening it on a picked
//!   connection, sending, the response state machine (headers, messages,
//!   trailers); until the call commits, the sent frames kept to open a
//!   replacement stream (retries) or streams beside it (hedging).
//! * [`retry`] — gRFC A6's decisions: transparent retries, the retry
//!   policy's backoff and pushback, the channel's throttle.
//! * [`protocol`] — the gRPC rules as pure functions: request headers,
//!   response headers and trailers to a status, Trailers-Only, HTTP status
//!   mapping, message decompression limits.
//! * [`handle`] — [`Call`], the public handle, and `Channel::start_call`.
//! * [`unary`] — the unary helpers (`Channel::unary*`).
//! * [`intercept`] — the channel's interceptors around each call.
//!
//! Life of a call: `Channel::start_call` registers it with the channel (and
//! a deadline timer); the first operation opens the attempt's stream
//! (asking the channel's picker for a connection); `send`/`close_send`
//! drive the request half; `recv` drives the response half; the call
//! *terminates* exactly once, when its status becomes known — from the
//! server's trailers, or locally (cancel, deadline, channel close, a
//! protocol violation, a size limit). Termination wakes every waiter,
//! resets the attempt's stream if it is still open and runs the done
//! callbacks on a runtime thread.
//!
//! The call depends on the channel (for the picker and its settings),
//! never the reverse: the channel knows active calls only as
//! `channel::ActiveCall` trait objects it can cancel.

#![forbid(unsafe_code)]

pub(crate) mod attempt;
pub mod error;
mod handle;
pub mod intercept;
pub mod options;
pub mod protocol;
pub(crate) mod retry;
pub(crate) mod state;
pub(crate) mod stats;
mod unary;

pub use error::{CallError, StartError};
pub use handle::{Call, DoneCallback};
pub use intercept::{CallContext, CallStart, Hooks, Interceptor, Interceptors, Reply};
pub use options::{CallOptions, Message, SendFlags, CORK_LIMIT};
pub use protocol::validate_method;
pub use stats::CallStatsSnapshot;
pub use unary::UnaryOutcome;
