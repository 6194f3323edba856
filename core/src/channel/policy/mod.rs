//! Load-balancing policies: a policy receives the resolver's endpoints,
//! owns a subchannel per endpoint it uses, sets the channel's connectivity
//! state (its aggregate) and publishes a [`Picker`] — a cheap, immutable
//! snapshot that each call attempt asks for a connection, with no lock
//! held across the pick. A new picker is published whenever the answer may
//! change, which wakes the calls that wait.
//!
//! Policies: [`pick_first`] (the default: one connection, to the first
//! endpoint that accepts; gRFC A61/A62) and [`round_robin`] (a connection
//! to every endpoint, calls spread over the READY ones), chosen by
//! `grpc.lb_policy_name` or the service config's `loadBalancingConfig`.

pub(crate) mod pick_first;
pub(crate) mod round_robin;

use super::connection::Killer;
use super::connectivity::Connectivity;
use super::resolver::Endpoint;
use super::state::ConnectivityState;
use super::subchannel::ConnectArgs;
use crate::rt::Lend;
use crate::status::{Code, Status};
use bytes::Bytes;
use h2::client::SendRequest;
use std::sync::Arc;
use tokio::sync::watch;

/// The policies this build has, by their service config names.
pub(crate) const POLICIES: &[&str] = &["pick_first", "round_robin"];

/// A connection chosen for one attempt.
pub(crate) struct Pick {
    /// Opens a stream on it.
    pub(crate) send: SendRequest<Bytes>,
    /// The connection, for a blocked caller to drive.
    pub(crate) conn: Arc<dyn Lend>,
    /// Marks it unusable when opening a stream on it fails.
    pub(crate) killer: Killer,
    /// Where it goes, as C-core writes peers (`ipv4:127.0.0.1:50051`),
    /// followed by a NUL.
    pub(crate) peer: Arc<str>,
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

/// A load-balancing policy, as the channel's control task drives it.
pub(crate) trait Policy: Send + Sync {
    /// The resolver's endpoints (never empty): use these from now on.
    fn update(&self, endpoints: Vec<Endpoint>);
    /// The resolver failed or found nothing: a policy without endpoints
    /// goes TRANSIENT_FAILURE with this status; one with endpoints keeps
    /// them.
    fn resolver_error(&self, status: Status);
    /// Leave IDLE: start connecting.
    fn exit_idle(&self);
    /// End every reconnect backoff early.
    fn reset_backoff(&self);
    /// The channel has been idle for its idle timeout: close every
    /// connection, forget the endpoints, IDLE.
    fn enter_idle(&self);
    /// The channel is closed: close every connection; final.
    fn shutdown(&self);
    /// Its name (`pick_first`, `round_robin`).
    fn name(&self) -> &'static str;
    /// The subchannels it uses now, in its order.
    fn subchannels(&self) -> Vec<Arc<super::subchannel::Subchannel>>;
}

/// What a policy asks of its channel.
pub(crate) trait Helper: Send + Sync {
    /// Resolve the target again (rate-limited by the channel).
    fn request_resolution(&self);
    /// A call wants a connection while the channel is IDLE.
    fn exit_idle(&self);
}

/// What a policy is given by its channel.
pub(crate) struct PolicyContext {
    /// Shared by every subchannel the policy makes.
    pub(crate) connect: Arc<ConnectArgs>,
    /// The channel's state, which the policy sets.
    pub(crate) connectivity: Arc<Connectivity>,
    /// Where the policy publishes its picker.
    pub(crate) pickers: Arc<watch::Sender<Arc<dyn Picker>>>,
    /// The channel.
    pub(crate) helper: std::sync::Weak<dyn Helper>,
}

impl PolicyContext {
    /// Publishes `picker`, then moves the channel to `to`. Transitions the
    /// connectivity table does not allow go through the state between
    /// (TRANSIENT_FAILURE or IDLE → READY via CONNECTING, READY →
    /// CONNECTING via IDLE). Callers hold their policy's lock, so pickers
    /// and states are published in order.
    pub(crate) fn publish(&self, to: ConnectivityState, picker: Arc<dyn Picker>) {
        use ConnectivityState::*;
        self.pickers.send_replace(picker);
        let cur = self.connectivity.state();
        if cur != to && cur != Shutdown && !cur.may_become(to) {
            let between = if cur == Ready { Idle } else { Connecting };
            self.connectivity.set_state(between, || {});
        }
        self.connectivity.set_state(to, || {});
    }

    pub(crate) fn request_resolution(&self) {
        if let Some(h) = self.helper.upgrade() {
            h.request_resolution();
        }
    }
}

/// CONNECTING: wait.
pub(crate) struct QueuePicker;

impl Picker for QueuePicker {
    fn pick(&self) -> PickResult {
        PickResult::Queue
    }
}

/// IDLE: a pick asks the channel to connect, then waits.
pub(crate) struct IdlePicker(pub(crate) std::sync::Weak<dyn Helper>);

impl Picker for IdlePicker {
    fn pick(&self) -> PickResult {
        if let Some(h) = self.0.upgrade() {
            h.exit_idle();
        }
        PickResult::Queue
    }
}

/// TRANSIENT_FAILURE: fail fast.
pub(crate) struct FailPicker(pub(crate) Status);

impl Picker for FailPicker {
    fn pick(&self) -> PickResult {
        PickResult::Fail(self.0.clone())
    }
}

/// SHUTDOWN: every call ends.
pub(crate) struct DropPicker;

impl Picker for DropPicker {
    fn pick(&self) -> PickResult {
        PickResult::Drop(Status::new(Code::Cancelled, "channel closed"))
    }
}

/// The subchannels' errors in one UNAVAILABLE status: a single endpoint
/// that answered and failed its handshake gives its status as it is (it
/// says what went wrong with TLS or HTTP/2); otherwise every endpoint's
/// reason, each naming its endpoint.
pub(crate) fn all_failed(errors: &[(String, Status)]) -> Status {
    if let [(ep, st)] = errors {
        if !st.message().starts_with(ep.as_str()) {
            return st.clone();
        }
    }
    let all: Vec<String> = errors
        .iter()
        .map(|(ep, st)| {
            if st.message().starts_with(ep.as_str()) {
                st.message().to_string()
            } else {
                format!("{ep}: {}", st.message())
            }
        })
        .collect();
    Status::new(
        Code::Unavailable,
        format!("failed to connect to all addresses: {}", all.join("; ")),
    )
}
