//! Load-balancing policies: a policy owns the channel's subchannels,
//! drives their connections, sets the channel's connectivity state (its
//! aggregate) and publishes a [`Picker`] — a cheap, immutable snapshot that
//! each call attempt asks for a connection, with no lock held across the
//! pick. A new picker is published whenever the answer may change, which
//! wakes the calls that wait.
//!
//! Policies: [`pick_first`] (the default, today the only one). The
//! backends issue adds `round_robin` beside it, chosen by
//! `grpc.lb_policy_name` or the service config.

pub(crate) mod pick_first;

use super::calls::Calls;
use super::connectivity::Connectivity;
use super::options::ConnectionConfig;
use super::subchannel::ConnectArgs;
use super::target::Target;
use crate::rt::Lend;
use crate::status::Status;
use bytes::Bytes;
use h2::client::SendRequest;
use std::sync::Arc;
use tokio::sync::watch;

/// A connection chosen for one attempt: a handle to open a stream on it,
/// and the connection for a blocked caller to drive.
pub(crate) struct Pick {
    pub(crate) send: SendRequest<Bytes>,
    pub(crate) conn: Arc<dyn Lend>,
}

/// What a picker says to an attempt.
pub(crate) enum PickResult {
    /// Use this connection.
    Ready(Pick),
    /// No connection yet: wait for the next picker.
    Queue,
    /// Failing: fail-fast calls end with this status; wait-for-ready calls
    /// wait for the next picker.
    Fail(Status),
    /// End every call with this status, wait-for-ready or not (the channel
    /// is shut down).
    Drop(Status),
}

/// Chooses a connection for each attempt. Immutable: a policy replaces it
/// rather than changing it.
pub(crate) trait Picker: Send + Sync {
    fn pick(&self) -> PickResult;
}

/// A load-balancing policy, as the channel drives it.
pub(crate) trait Policy: Send + Sync {
    /// Leave IDLE: start connecting.
    fn exit_idle(&self);
    /// End a reconnect backoff early.
    fn reset_backoff(&self);
    /// A connection it handed out failed while a stream was being opened
    /// on it (GOAWAY, reset): stop using it.
    fn connection_failed(&self, reason: &str, graceful: bool);
    /// The channel is closed: close every connection; final.
    fn shutdown(&self);
}

/// What a policy is given by its channel.
pub(crate) struct PolicyContext {
    /// The target to resolve before connecting.
    pub(crate) target: Target,
    pub(crate) cfg: ConnectionConfig,
    /// Shared by every subchannel the policy makes.
    pub(crate) connect: Arc<ConnectArgs>,
    /// The channel's state, which the policy sets.
    pub(crate) connectivity: Arc<Connectivity>,
    /// The channel's calls (for the idle timer).
    pub(crate) calls: Arc<Calls>,
    /// Where the policy publishes its picker.
    pub(crate) pickers: Arc<watch::Sender<Arc<dyn Picker>>>,
}
