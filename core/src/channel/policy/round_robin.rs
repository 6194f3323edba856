//! `round_robin`: a subchannel per endpoint, each connecting and
//! reconnecting on its own backoff, and calls spread over the READY ones
//! in turn. The channel's state is the aggregate C-core reports: READY if
//! any subchannel is READY, else CONNECTING if any is connecting (or idle,
//! about to), else TRANSIENT_FAILURE. A subchannel that failed counts as
//! failing until it is READY again ("sticky", gRFC A61), so a retry after
//! a backoff does not flip the channel back to CONNECTING. A subchannel
//! that fails or loses its connection asks for a new resolution.

use super::{
    DropPicker, FailPicker, IdlePicker, PickResult, Picker, Policy, PolicyContext, QueuePicker,
};
use crate::channel::resolver::Endpoint;
use crate::channel::state::ConnectivityState;
use crate::channel::subchannel::{Change, ReadyConn, Subchannel, Watcher};
use crate::log::{Level, Tracer};
use crate::status::{Code, Status};
use crate::sync::lock;
use crate::trace;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

struct Entry {
    sc: Arc<Subchannel>,
    /// Failed since it was last READY.
    failing: bool,
}

struct Inner {
    list: Vec<Entry>,
    last_error: Option<Status>,
    /// IDLE (created, or after the idle timeout): waits for a pick.
    idle: bool,
    shutdown: bool,
}

/// The round_robin policy of one channel.
pub(crate) struct RoundRobin {
    me: Weak<RoundRobin>,
    ctx: PolicyContext,
    inner: Mutex<Inner>,
}

impl RoundRobin {
    pub(crate) fn new(ctx: PolicyContext) -> Arc<RoundRobin> {
        let rr = Arc::new_cyclic(|me: &Weak<RoundRobin>| RoundRobin {
            me: me.clone(),
            ctx,
            inner: Mutex::new(Inner {
                list: Vec::new(),
                last_error: None,
                idle: true,
                shutdown: false,
            }),
        });
        rr.ctx.publish(
            ConnectivityState::Idle,
            Arc::new(IdlePicker(rr.ctx.helper.clone())),
        );
        rr
    }

    /// Publishes the aggregate state and its picker (the lock is held).
    fn aggregate(&self, g: &Inner) {
        if g.idle || g.shutdown {
            return;
        }
        let ready: Vec<ReadyConn> = g.list.iter().filter_map(|e| e.sc.ready()).collect();
        trace!(
            Tracer::RoundRobin,
            Level::Debug,
            "round_robin: {} of {} READY",
            ready.len(),
            g.list.len()
        );
        if !ready.is_empty() {
            let start = fastrand::usize(..ready.len());
            self.ctx.publish(
                ConnectivityState::Ready,
                Arc::new(RoundRobinPicker {
                    ready,
                    next: AtomicUsize::new(start),
                }),
            );
            return;
        }
        let connecting = g.list.is_empty() || g.list.iter().any(|e| !e.failing);
        if connecting {
            self.ctx
                .publish(ConnectivityState::Connecting, Arc::new(QueuePicker));
        } else {
            let why = g
                .last_error
                .as_ref()
                .map(|e| e.message().to_string())
                .unwrap_or_default();
            self.ctx.publish(
                ConnectivityState::TransientFailure,
                Arc::new(FailPicker(Status::new(
                    Code::Unavailable,
                    format!("connections to all backends failing; last error: {why}"),
                ))),
            );
        }
    }
}

impl Watcher for RoundRobin {
    fn changed(&self, sc: &Arc<Subchannel>, change: Change) {
        let mut g = lock(&self.inner);
        if g.shutdown {
            return;
        }
        let Some(e) = g.list.iter_mut().find(|e| Arc::ptr_eq(&e.sc, sc)) else {
            return; // removed by a resolution
        };
        match change.state {
            ConnectivityState::Ready => e.failing = false,
            ConnectivityState::TransientFailure => {
                e.failing = true;
                if let Some(err) = change.error {
                    g.last_error = Some(err);
                }
                self.ctx.request_resolution();
            }
            ConnectivityState::Idle => {
                // Out of its backoff, or its connection ended: connect
                // again (the backoff starts over after a READY).
                // A lost connection is not a failure (gRFC A61): the
                // subchannel counts as connecting again, so with no other
                // READY the channel is CONNECTING and calls wait for the
                // reconnection instead of failing.
                if let Some(closed) = &change.closed {
                    if !closed.graceful {
                        g.last_error = Some(Status::new(Code::Unavailable, closed.message.clone()));
                    }
                    self.ctx.request_resolution();
                }
                if !g.idle {
                    sc.connect();
                }
            }
            _ => {}
        }
        self.aggregate(&g);
    }
}

impl Policy for RoundRobin {
    fn update(&self, endpoints: Vec<Endpoint>) {
        let mut g = lock(&self.inner);
        if g.shutdown {
            return;
        }
        let mut old = std::mem::take(&mut g.list);
        let mut list = Vec::with_capacity(endpoints.len());
        for ep in endpoints {
            match old.iter().position(|e| e.sc.endpoint().same_address(&ep)) {
                Some(i) => list.push(old.swap_remove(i)),
                None => list.push(Entry {
                    sc: Subchannel::new(ep, self.ctx.connect.clone(), self.me.clone()),
                    failing: false,
                }),
            }
        }
        for e in old {
            trace!(
                Tracer::RoundRobin,
                Level::Info,
                "round_robin: {} removed",
                e.sc.endpoint()
            );
            e.sc.retire("address removed by name resolution");
        }
        trace!(
            Tracer::RoundRobin,
            Level::Info,
            "round_robin: {} address(es)",
            list.len()
        );
        g.list = list;
        if self.ctx.connectivity.state() != ConnectivityState::Idle {
            g.idle = false;
        }
        if !g.idle {
            for e in &g.list {
                if e.sc.state() == ConnectivityState::Idle {
                    e.sc.connect();
                }
            }
        }
        self.aggregate(&g);
    }

    fn resolver_error(&self, status: Status) {
        let mut g = lock(&self.inner);
        if g.shutdown || !g.list.is_empty() {
            return;
        }
        g.last_error = Some(status.clone());
        g.idle = false;
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
        g.idle = false;
        for e in &g.list {
            e.sc.connect();
        }
        self.aggregate(&g);
    }

    fn reset_backoff(&self) {
        let g = lock(&self.inner);
        for e in &g.list {
            e.sc.reset_backoff();
        }
    }

    fn enter_idle(&self) {
        let mut g = lock(&self.inner);
        if g.shutdown {
            return;
        }
        for e in g.list.drain(..) {
            e.sc.shutdown("idle timeout");
        }
        g.idle = true;
        self.ctx.publish(
            ConnectivityState::Idle,
            Arc::new(IdlePicker(self.ctx.helper.clone())),
        );
    }

    fn shutdown(&self) {
        let mut g = lock(&self.inner);
        g.shutdown = true;
        for e in g.list.drain(..) {
            e.sc.shutdown("channel closed");
        }
        self.ctx
            .publish(ConnectivityState::Shutdown, Arc::new(DropPicker));
    }

    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn subchannels(&self) -> Vec<Arc<Subchannel>> {
        lock(&self.inner)
            .list
            .iter()
            .map(|e| e.sc.clone())
            .collect()
    }
}

/// READY: the READY connections in turn, from a random start.
struct RoundRobinPicker {
    ready: Vec<ReadyConn>,
    next: AtomicUsize,
}

impl Picker for RoundRobinPicker {
    fn pick(&self) -> PickResult {
        let n = self.ready.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            if let Some(p) = self.ready[(start + k) % n].pick() {
                return PickResult::Ready(p);
            }
        }
        // Every one just ended: their subchannels are about to report it.
        PickResult::Queue
    }
}
