//! `pick_first`, the default policy: one connection at a time, to the
//! first endpoint that accepts, tried in the resolver's order. A manager
//! task walks the channel's connectivity state machine
//! (`doc/connectivity-semantics-and-api.md` in the grpc/grpc repository):
//!
//! * IDLE → CONNECTING when a call (or `connect`) asks for a connection;
//! * CONNECTING → READY, or → TRANSIENT_FAILURE when every endpoint failed;
//! * TRANSIENT_FAILURE → CONNECTING when the backoff has passed
//!   (`doc/connection-backoff.md` in grpc/grpc), or → IDLE after the idle timeout;
//! * READY → TRANSIENT_FAILURE when the connection breaks (keepalive
//!   timeout, socket error) — then a fresh backoff sequence starts at once;
//! * READY → IDLE after the idle timeout, or on GOAWAY;
//! * any → SHUTDOWN on `close`.
//!
//! Fail-fast calls end with UNAVAILABLE while the channel is failing (also
//! in the CONNECTING of a retry: the "sticky" failure of gRFC A62 (grpc/proposal));
//! wait-for-ready calls wait for READY.
//!
//! Today the backoff covers the whole endpoint list (one sequence per
//! channel) and endpoints are tried one after the other; the backends
//! issue brings gRFC A61/A62 (grpc/proposal) in full (per-subchannel backoff, the 250 ms
//! happy-eyeballs delay, `shuffleAddressList`).

use super::{Pick, PickResult, Picker, Policy, PolicyContext};
use crate::channel::backoff::Backoff;
use crate::channel::connection::{Connection, Killer};
use crate::channel::resolver;
use crate::channel::state::ConnectivityState;
use crate::channel::subchannel::{ConnectFailure, Subchannel};
use crate::log::log;
use crate::rt::{self, Lend};
use crate::status::{Code, Status};
use crate::sync::lock;
use bytes::Bytes;
use h2::client::SendRequest;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;
use tokio::time::Instant;

struct Inner {
    /// The connection in use and the subchannel that made it.
    conn: Option<(Connection, Arc<Subchannel>)>,
    last_error: Option<Status>,
    manager_started: bool,
    connect_requested: bool,
    reset_backoff: bool,
    /// Set on TRANSIENT_FAILURE, cleared on READY or IDLE: while set,
    /// fail-fast calls end at once even in the CONNECTING of a retry.
    failing: bool,
}

/// The pick_first policy of one channel.
pub(crate) struct PickFirst {
    me: Weak<PickFirst>,
    ctx: PolicyContext,
    inner: Mutex<Inner>,
    kick: Notify,
}

impl PickFirst {
    pub(crate) fn new(ctx: PolicyContext) -> Arc<PickFirst> {
        let pf = Arc::new_cyclic(|me: &Weak<PickFirst>| PickFirst {
            me: me.clone(),
            ctx,
            inner: Mutex::new(Inner {
                conn: None,
                last_error: None,
                manager_started: false,
                connect_requested: false,
                reset_backoff: false,
                failing: false,
            }),
            kick: Notify::new(),
        });
        pf.publish();
        pf
    }

    fn state(&self) -> ConnectivityState {
        self.ctx.connectivity.state()
    }

    /// Moves the channel to `to` and publishes the picker for it.
    fn set_state(&self, to: ConnectivityState) {
        // `failing` changes together with the state (under the
        // connectivity's lock), so a woken caller sees both.
        self.ctx.connectivity.set_state(to, || match to {
            ConnectivityState::TransientFailure => lock(&self.inner).failing = true,
            ConnectivityState::Ready | ConnectivityState::Idle => lock(&self.inner).failing = false,
            _ => {}
        });
        self.publish();
    }

    /// Publishes the picker for the current state. Built under the
    /// pickers' lock, so concurrent publishers cannot leave a stale one.
    fn publish(&self) {
        self.ctx.pickers.send_modify(|p| *p = self.picker());
    }

    fn picker(&self) -> Arc<dyn Picker> {
        let state = self.state();
        let g = lock(&self.inner);
        match state {
            ConnectivityState::Ready => match g.conn.as_ref() {
                Some((c, _)) => Arc::new(ReadyPicker {
                    send: c.send.clone(),
                    conn: c.lend.clone(),
                    killer: c.killer(),
                }),
                None => Arc::new(QueuePicker),
            },
            ConnectivityState::Idle => Arc::new(IdlePicker(self.me.clone())),
            ConnectivityState::Connecting if !g.failing => Arc::new(QueuePicker),
            ConnectivityState::Connecting | ConnectivityState::TransientFailure => {
                Arc::new(FailPicker(g.last_error.clone().unwrap_or_else(|| {
                    Status::new(Code::Unavailable, "channel is in TRANSIENT_FAILURE")
                })))
            }
            ConnectivityState::Shutdown => Arc::new(DropPicker),
        }
    }

    /// Resolves the target and connects to the first endpoint that
    /// accepts. Failures are UNAVAILABLE with every endpoint's reason.
    async fn connect_first(&self) -> Result<(Connection, Arc<Subchannel>), Status> {
        let res = resolver::resolve(&self.ctx.target).await;
        if res.endpoints.is_empty() {
            return Err(res.failure(&self.ctx.target.authority));
        }
        let mut dial_errors = res.errors.clone();
        let mut handshake: Vec<(String, Status)> = Vec::new();
        for ep in res.endpoints {
            let sc = Arc::new(Subchannel::new(ep, self.ctx.connect.clone()));
            let r = sc.connect().await;
            log(&format!("subchannel {} is {}", sc.endpoint(), sc.state()));
            match r {
                Ok(c) => return Ok((c, sc)),
                Err(ConnectFailure::Dial(m)) => dial_errors.push(m),
                Err(ConnectFailure::Handshake(st)) => {
                    handshake.push((sc.endpoint().to_string(), st))
                }
            }
        }
        // One endpoint that answered and failed its handshake: its status
        // as it is (it says what went wrong with TLS or HTTP/2).
        if dial_errors.is_empty() && handshake.len() == 1 {
            return Err(handshake.pop().expect("one").1);
        }
        let all: Vec<String> = dial_errors
            .into_iter()
            .chain(
                handshake
                    .into_iter()
                    .map(|(ep, st)| format!("{ep}: {}", st.message())),
            )
            .collect();
        Err(Status::new(
            Code::Unavailable,
            format!("failed to connect to all addresses: {}", all.join("; ")),
        ))
    }

    /// Installs a new connection: READY.
    fn install(&self, conn: Connection, sc: Arc<Subchannel>) {
        {
            let mut g = lock(&self.inner);
            if self.state() == ConnectivityState::Shutdown {
                conn.abort("channel closed");
                return;
            }
            g.conn = Some((conn, sc));
            g.last_error = None;
        }
        self.set_state(ConnectivityState::Ready);
    }

    /// Sleeps until `until`, or until a reset-backoff request; false on
    /// SHUTDOWN.
    async fn wait_out_backoff(&self, until: Instant) -> bool {
        loop {
            let kicked = self.kick.notified();
            tokio::pin!(kicked);
            kicked.as_mut().enable();
            if self.state() == ConnectivityState::Shutdown {
                return false;
            }
            if std::mem::take(&mut lock(&self.inner).reset_backoff) {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return self.state() != ConnectivityState::Shutdown,
                _ = kicked => {}
            }
        }
    }

    fn idle_expired(&self) -> bool {
        self.ctx
            .cfg
            .idle_timeout
            .is_some_and(|t| self.ctx.calls.idle_for(t))
    }

    /// Completes when there have been no calls for the idle timeout.
    async fn idle_timer(&self) {
        match self.ctx.cfg.idle_timeout {
            Some(t) => self.ctx.calls.idle(t).await,
            None => std::future::pending().await,
        }
    }
}

impl Policy for PickFirst {
    fn exit_idle(&self) {
        {
            let mut g = lock(&self.inner);
            g.connect_requested = true;
            if !g.manager_started && self.state() != ConnectivityState::Shutdown {
                g.manager_started = true;
                if let (Some(me), Ok(h)) = (self.me.upgrade(), rt::handle()) {
                    h.spawn(run(me));
                }
            }
        }
        self.kick.notify_one();
    }

    fn reset_backoff(&self) {
        lock(&self.inner).reset_backoff = true;
        self.exit_idle();
    }

    fn connection_failed(&self, reason: &str, graceful: bool) {
        if let Some((c, _)) = lock(&self.inner).conn.as_ref() {
            c.mark_dead(reason, graceful);
        }
    }

    fn shutdown(&self) {
        self.set_state(ConnectivityState::Shutdown);
        if let Some((c, sc)) = lock(&self.inner).conn.take() {
            c.abort("channel closed");
            sc.disconnected();
        }
        self.kick.notify_one();
    }
}

/// The manager task: one per channel, started on the first connect request.
async fn run(pf: Arc<PickFirst>) {
    let mut backoff = Backoff::new(pf.ctx.cfg.backoff);
    loop {
        match pf.state() {
            ConnectivityState::Shutdown => return,
            ConnectivityState::Idle => {
                let kicked = pf.kick.notified();
                tokio::pin!(kicked);
                kicked.as_mut().enable();
                let go = std::mem::take(&mut lock(&pf.inner).connect_requested);
                if go {
                    pf.set_state(ConnectivityState::Connecting);
                } else {
                    kicked.await;
                }
            }
            ConnectivityState::Connecting | ConnectivityState::TransientFailure => {
                pf.set_state(ConnectivityState::Connecting);
                lock(&pf.inner).connect_requested = false;
                let start = Instant::now();
                let (wait, limit) = backoff.next_attempt();
                let attempt = tokio::time::timeout(limit, pf.connect_first());
                let result = tokio::select! {
                    r = attempt => r,
                    _ = pf.ctx.connectivity.wait_for_change(ConnectivityState::Connecting) => {
                        // Only SHUTDOWN changes the state under us here.
                        return;
                    }
                };
                match result {
                    Ok(Ok((conn, sc))) => {
                        backoff.reset();
                        pf.install(conn, sc);
                        continue;
                    }
                    Ok(Err(st)) => lock(&pf.inner).last_error = Some(st),
                    Err(_) => {
                        lock(&pf.inner).last_error = Some(Status::new(
                            Code::Unavailable,
                            format!(
                                "connection attempt timed out after {} ms",
                                limit.as_millis()
                            ),
                        ))
                    }
                }
                pf.set_state(ConnectivityState::TransientFailure);
                if !pf.wait_out_backoff(start + wait).await {
                    return;
                }
                if pf.idle_expired() {
                    pf.set_state(ConnectivityState::Idle);
                    backoff.reset();
                }
            }
            ConnectivityState::Ready => {
                let (dead, failed) = match lock(&pf.inner).conn.as_ref() {
                    Some((c, _)) => (c.dead_signal(), c.clone_reason()),
                    None => {
                        pf.set_state(ConnectivityState::TransientFailure);
                        continue;
                    }
                };
                tokio::select! {
                    _ = dead.notified_or_dead() => {}
                    _ = pf.idle_timer() => {
                        if let Some((c, sc)) = lock(&pf.inner).conn.take() {
                            c.abort("idle timeout");
                            sc.disconnected();
                        }
                        log("closing the connection after the idle timeout");
                        pf.set_state(ConnectivityState::Idle);
                        continue;
                    }
                    _ = pf.ctx.connectivity.wait_for_change(ConnectivityState::Ready) => return,
                }
                // Release our handle: streams still in flight on it (after a
                // GOAWAY) finish on their own.
                if let Some((_, sc)) = lock(&pf.inner).conn.take() {
                    sc.disconnected();
                }
                let reason = failed.get();
                if reason.too_many_pings {
                    pf.ctx.connect.keepalive.too_many_pings();
                }
                if reason.graceful {
                    // GOAWAY is not a failure: READY → IDLE, and at once →
                    // CONNECTING when calls want a connection (the streams
                    // the server accepted finish on the old one).
                    pf.set_state(ConnectivityState::Idle);
                    if pf.ctx.calls.active() > 0 {
                        lock(&pf.inner).connect_requested = true;
                    }
                } else {
                    lock(&pf.inner).last_error =
                        Some(Status::new(Code::Unavailable, reason.message.clone()));
                    pf.set_state(ConnectivityState::TransientFailure);
                    // A connection that worked and then broke: a new backoff
                    // sequence starts with an immediate attempt.
                    backoff.reset();
                }
            }
        }
    }
}

/// READY: every attempt goes to the one connection while it lives.
struct ReadyPicker {
    send: SendRequest<Bytes>,
    conn: Arc<dyn Lend>,
    killer: Killer,
}

impl Picker for ReadyPicker {
    fn pick(&self) -> PickResult {
        if self.killer.is_dead() {
            // The manager is about to publish the next state.
            return PickResult::Queue;
        }
        PickResult::Ready(Pick {
            send: self.send.clone(),
            conn: self.conn.clone(),
        })
    }
}

/// CONNECTING: wait.
struct QueuePicker;

impl Picker for QueuePicker {
    fn pick(&self) -> PickResult {
        PickResult::Queue
    }
}

/// IDLE: a pick starts connecting, then waits.
struct IdlePicker(Weak<PickFirst>);

impl Picker for IdlePicker {
    fn pick(&self) -> PickResult {
        if let Some(pf) = self.0.upgrade() {
            pf.exit_idle();
        }
        PickResult::Queue
    }
}

/// TRANSIENT_FAILURE (and the CONNECTING of a retry): fail fast.
struct FailPicker(Status);

impl Picker for FailPicker {
    fn pick(&self) -> PickResult {
        PickResult::Fail(self.0.clone())
    }
}

/// SHUTDOWN: every call ends.
struct DropPicker;

impl Picker for DropPicker {
    fn pick(&self) -> PickResult {
        PickResult::Drop(Status::new(Code::Cancelled, "channel closed"))
    }
}
