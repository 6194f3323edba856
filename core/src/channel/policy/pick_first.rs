//! `pick_first`, the default policy (gRFC A61 and A62 in grpc/proposal):
//! one connection at a time, to the first endpoint that accepts.
//!
//! * A pass tries the endpoints in the resolver's order (shuffled first
//!   with `shuffleAddressList`): it starts the next attempt when the one
//!   before fails, or after 250 ms without an answer ("happy eyeballs":
//!   a black-holed address does not hold up the others), and keeps every
//!   attempt it started; the first to be READY is used and the others
//!   are closed.
//! * When every endpoint has failed the channel is TRANSIENT_FAILURE and
//!   stays so ("sticky": fail-fast calls fail, also in the CONNECTING of
//!   later attempts) until one connects; each endpoint retries on its own
//!   backoff, and a new resolution is requested.
//! * The connection in use ends (GOAWAY, or broken): IDLE, and at once
//!   CONNECTING when calls want a connection, as C-core; a lost
//!   connection is not a failure, so fail-fast calls wait for the new one.
//!   A new resolution is requested.
//! * New endpoints from the resolver: a connection to an endpoint still
//!   listed is kept; otherwise a new pass starts over the new list.

use super::{
    all_failed, DropPicker, FailPicker, IdlePicker, PickResult, Picker, Policy, PolicyContext,
    QueuePicker,
};
use crate::channel::calls::Calls;
use crate::channel::resolver::Endpoint;
use crate::channel::state::ConnectivityState;
use crate::channel::subchannel::{Change, ReadyConn, Subchannel, Watcher};
use crate::log::{Level, Tracer};
use crate::rt;
use crate::status::{Code, Status};
use crate::sync::lock;
use crate::trace;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Delay before the next endpoint is tried while one is still connecting.
pub(crate) const HAPPY_EYEBALLS_DELAY: Duration = Duration::from_millis(250);

struct Inner {
    /// The endpoints' subchannels, in the order tried.
    list: Vec<Arc<Subchannel>>,
    /// Per endpoint of `list`: failed in this pass.
    failed: Vec<bool>,
    /// The next endpoint of the pass to start.
    next: usize,
    /// The subchannel in use.
    selected: Option<Arc<Subchannel>>,
    /// A pass is running (CONNECTING or the sticky TRANSIENT_FAILURE).
    connecting: bool,
    /// Every endpoint failed: stay TRANSIENT_FAILURE until one connects.
    sticky: bool,
    last_error: Option<Status>,
    /// Counts passes and timers, so a late timer is ignored.
    timer_gen: u64,
    /// IDLE by the policy (the connection went away, or idleness): the
    /// next pick starts a pass.
    idle: bool,
    shutdown: bool,
}

/// The pick_first policy of one channel.
pub(crate) struct PickFirst {
    me: Weak<PickFirst>,
    ctx: PolicyContext,
    shuffle: bool,
    calls: Arc<Calls>,
    inner: Mutex<Inner>,
}

impl PickFirst {
    pub(crate) fn new(ctx: PolicyContext, shuffle: bool, calls: Arc<Calls>) -> Arc<PickFirst> {
        let pf = Arc::new_cyclic(|me: &Weak<PickFirst>| PickFirst {
            me: me.clone(),
            ctx,
            shuffle,
            calls,
            inner: Mutex::new(Inner {
                list: Vec::new(),
                failed: Vec::new(),
                next: 0,
                selected: None,
                connecting: false,
                sticky: false,
                last_error: None,
                timer_gen: 0,
                idle: true,
                shutdown: false,
            }),
        });
        pf.ctx.publish(
            ConnectivityState::Idle,
            Arc::new(IdlePicker(pf.ctx.helper.clone())),
        );
        pf
    }

    fn watcher(&self) -> Weak<dyn Watcher> {
        self.me.clone()
    }

    fn fail_status(g: &Inner) -> Status {
        g.last_error
            .clone()
            .unwrap_or_else(|| Status::new(Code::Unavailable, "channel is in TRANSIENT_FAILURE"))
    }

    /// Starts a pass over the list (the lock is held).
    fn start_pass(&self, g: &mut Inner) {
        trace!(
            Tracer::PickFirst,
            Level::Debug,
            "pick_first: a pass over {} address(es)",
            g.list.len()
        );
        g.idle = false;
        g.connecting = true;
        g.next = 0;
        g.failed = vec![false; g.list.len()];
        // A subchannel closed by an earlier selection is replaced.
        let args = self.ctx.connect.clone();
        for sc in g.list.iter_mut() {
            if sc.is_shut_down() {
                *sc = Subchannel::new(sc.endpoint().clone(), args.clone(), self.watcher());
            }
        }
        let picker: Arc<dyn Picker> = if g.sticky {
            Arc::new(FailPicker(Self::fail_status(g)))
        } else {
            Arc::new(QueuePicker)
        };
        self.ctx.publish(ConnectivityState::Connecting, picker);
        self.try_next(g);
    }

    /// Starts the next endpoint of the pass and arms the 250 ms timer.
    fn try_next(&self, g: &mut Inner) {
        while g.next < g.list.len() {
            let i = g.next;
            g.next += 1;
            let sc = g.list[i].clone();
            match sc.state() {
                ConnectivityState::Ready => {
                    self.select(g, sc);
                    return;
                }
                // Still in its backoff from an earlier failure: the next.
                ConnectivityState::TransientFailure => {
                    g.failed[i] = true;
                    continue;
                }
                _ => {
                    sc.connect();
                    g.timer_gen += 1;
                    let gen = g.timer_gen;
                    let me = self.me.clone();
                    if let Ok(h) = rt::handle() {
                        h.spawn(async move {
                            tokio::time::sleep(HAPPY_EYEBALLS_DELAY).await;
                            if let Some(pf) = me.upgrade() {
                                pf.timer(gen);
                            }
                        });
                    }
                    return;
                }
            }
        }
        self.check_all_failed(g);
    }

    fn timer(&self, gen: u64) {
        let mut g = lock(&self.inner);
        if g.shutdown || g.timer_gen != gen || !g.connecting || g.selected.is_some() {
            return;
        }
        self.try_next(&mut g);
    }

    /// Every endpoint failed in this pass: TRANSIENT_FAILURE (sticky), a
    /// new resolution, and endpoints retry as their backoffs end.
    fn check_all_failed(&self, g: &mut Inner) {
        if g.next < g.list.len() || !g.failed.iter().all(|f| *f) || g.list.is_empty() {
            return;
        }
        let errors: Vec<(String, Status)> = g
            .list
            .iter()
            .filter_map(|sc| Some((sc.endpoint().to_string(), sc.last_error()?)))
            .collect();
        if !errors.is_empty() {
            g.last_error = Some(all_failed(&errors));
        }
        g.sticky = true;
        trace!(
            Tracer::PickFirst,
            Level::Info,
            "pick_first: every address failed: {}",
            Self::fail_status(g).message()
        );
        self.ctx.publish(
            ConnectivityState::TransientFailure,
            Arc::new(FailPicker(Self::fail_status(g))),
        );
        self.ctx.request_resolution();
        // Endpoints already out of their backoff try again now.
        let mut retrying = false;
        for sc in &g.list {
            if sc.state() == ConnectivityState::Idle {
                sc.connect();
                retrying = true;
            }
        }
        if retrying {
            self.ctx.publish(
                ConnectivityState::Connecting,
                Arc::new(FailPicker(Self::fail_status(g))),
            );
        }
    }

    /// Uses `sc`: READY; the other endpoints' attempts are closed.
    fn select(&self, g: &mut Inner, sc: Arc<Subchannel>) {
        let Some(ready) = sc.ready() else {
            return;
        };
        for other in &g.list {
            if !Arc::ptr_eq(other, &sc) {
                other.shutdown("another address was chosen");
            }
        }
        trace!(
            Tracer::PickFirst,
            Level::Info,
            "pick_first: using {}",
            sc.endpoint()
        );
        g.selected = Some(sc);
        g.connecting = false;
        g.sticky = false;
        g.last_error = None;
        g.timer_gen += 1;
        self.ctx
            .publish(ConnectivityState::Ready, Arc::new(ReadyPicker(ready)));
    }

    fn index_of(g: &Inner, sc: &Arc<Subchannel>) -> Option<usize> {
        g.list.iter().position(|s| Arc::ptr_eq(s, sc))
    }
}

impl Watcher for PickFirst {
    fn changed(&self, sc: &Arc<Subchannel>, change: Change) {
        let mut g = lock(&self.inner);
        if g.shutdown {
            return;
        }
        if g.selected.as_ref().is_some_and(|s| Arc::ptr_eq(s, sc)) {
            if change.state != ConnectivityState::Idle {
                return;
            }
            // The connection in use ended.
            g.selected = None;
            self.ctx.request_resolution();
            // A lost connection is not a failure either (gRFC A62, as
            // C-core): IDLE, and at once a new pass when calls want a
            // connection; they wait for it instead of failing. (After a
            // GOAWAY the streams the server accepted finish on the old
            // connection.)
            let closed = change.closed.unwrap_or_default();
            if !closed.graceful {
                g.last_error = Some(Status::new(Code::Unavailable, closed.message));
            }
            g.idle = true;
            self.ctx.publish(
                ConnectivityState::Idle,
                Arc::new(IdlePicker(self.ctx.helper.clone())),
            );
            if self.calls.active() > 0 {
                self.start_pass(&mut g);
            }
            return;
        }
        let Some(i) = Self::index_of(&g, sc) else {
            return; // an old list's
        };
        if !g.connecting || g.selected.is_some() {
            return;
        }
        match change.state {
            ConnectivityState::Ready => self.select(&mut g, sc.clone()),
            // A failed attempt, or a connection that ended before it could
            // be used (READY, then closed before it was selected).
            ConnectivityState::TransientFailure | ConnectivityState::Idle
                if change.state == ConnectivityState::TransientFailure
                    || change.closed.is_some() =>
            {
                if let Some(f) = g.failed.get_mut(i) {
                    *f = true;
                }
                let error = change.error.or_else(|| {
                    change
                        .closed
                        .map(|c| Status::new(Code::Unavailable, c.message))
                });
                if let Some(e) = error {
                    if !g.sticky {
                        g.last_error = Some(e);
                    }
                }
                if g.next == i + 1 {
                    // The endpoint being tried failed: the next one now.
                    g.timer_gen += 1;
                    self.try_next(&mut g);
                } else {
                    // After a failed pass this keeps the error current.
                    self.check_all_failed(&mut g);
                }
            }
            // Its backoff ended. After a failed pass, every endpoint keeps
            // trying (A62).
            // The channel shows the new attempt as CONNECTING, while
            // fail-fast calls keep failing (the picker stays sticky).
            ConnectivityState::Idle if g.sticky && g.next >= g.list.len() => {
                sc.connect();
                self.ctx.publish(
                    ConnectivityState::Connecting,
                    Arc::new(FailPicker(Self::fail_status(&g))),
                );
            }
            _ => {}
        }
    }
}

impl Policy for PickFirst {
    fn update(&self, mut endpoints: Vec<Endpoint>) {
        if self.shuffle {
            fastrand::shuffle(&mut endpoints);
        }
        let mut g = lock(&self.inner);
        if g.shutdown {
            return;
        }
        // The connection in use stays while its endpoint is still listed.
        let keep = g
            .selected
            .as_ref()
            .filter(|s| endpoints.iter().any(|e| e.same_address(s.endpoint())))
            .cloned();
        let old = std::mem::take(&mut g.list);
        g.list = endpoints
            .into_iter()
            .map(|ep| match &keep {
                Some(k) if k.endpoint().same_address(&ep) => k.clone(),
                _ => Subchannel::new(ep, self.ctx.connect.clone(), self.watcher()),
            })
            .collect();
        for sc in old {
            if !keep.as_ref().is_some_and(|k| Arc::ptr_eq(k, &sc)) {
                sc.retire("address removed by name resolution");
            }
        }
        if keep.is_some() {
            return;
        }
        if let Some(s) = g.selected.take() {
            s.retire("address removed by name resolution");
        }
        // Connect unless IDLE by choice (the connection went away with no
        // calls waiting); a channel asked to connect has left IDLE.
        if !g.idle || self.ctx.connectivity.state() != ConnectivityState::Idle {
            self.start_pass(&mut g);
        }
    }

    fn resolver_error(&self, status: Status) {
        let mut g = lock(&self.inner);
        if g.shutdown || !g.list.is_empty() {
            return;
        }
        g.last_error = Some(status.clone());
        g.sticky = true;
        self.ctx.publish(
            ConnectivityState::TransientFailure,
            Arc::new(FailPicker(status)),
        );
    }

    fn exit_idle(&self) {
        let mut g = lock(&self.inner);
        if g.shutdown || !g.idle {
            return;
        }
        if g.list.is_empty() {
            // Waiting for the resolver.
            g.idle = false;
            self.ctx
                .publish(ConnectivityState::Connecting, Arc::new(QueuePicker));
            return;
        }
        self.start_pass(&mut g);
    }

    fn reset_backoff(&self) {
        let g = lock(&self.inner);
        for sc in &g.list {
            sc.reset_backoff();
        }
    }

    fn enter_idle(&self) {
        let mut g = lock(&self.inner);
        if g.shutdown {
            return;
        }
        for sc in g.list.drain(..) {
            sc.shutdown("idle timeout");
        }
        g.selected = None;
        g.connecting = false;
        g.sticky = false;
        g.idle = true;
        g.timer_gen += 1;
        self.ctx.publish(
            ConnectivityState::Idle,
            Arc::new(IdlePicker(self.ctx.helper.clone())),
        );
    }

    fn shutdown(&self) {
        let mut g = lock(&self.inner);
        g.shutdown = true;
        for sc in g.list.drain(..) {
            sc.shutdown("channel closed");
        }
        if let Some(s) = g.selected.take() {
            s.shutdown("channel closed");
        }
        self.ctx
            .publish(ConnectivityState::Shutdown, Arc::new(DropPicker));
    }

    fn name(&self) -> &'static str {
        "pick_first"
    }

    fn subchannels(&self) -> Vec<Arc<Subchannel>> {
        lock(&self.inner).list.clone()
    }
}

/// READY: every attempt goes to the one connection while it lives.
struct ReadyPicker(ReadyConn);

impl Picker for ReadyPicker {
    fn pick(&self) -> PickResult {
        match self.0.pick() {
            Some(p) => PickResult::Ready(p),
            // The subchannel is about to report the end.
            None => PickResult::Queue,
        }
    }
}
