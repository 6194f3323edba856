//! The channel's connectivity state (`doc/connectivity-semantics-and-api.md`
//! in the grpc/grpc repository) as the application sees it: the current
//! state (the load-balancing policy's aggregate), waiters, and ordered
//! subscribers. Subscribers get every change, in order, from one delivery
//! thread at a time.

use super::state::ConnectivityState;
use crate::completion::Serial;
use crate::log::{Level, Tracer};
use crate::sync::lock;
use crate::trace;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A connectivity-state callback.
pub type StateCallback = Arc<dyn Fn(ConnectivityState) + Send + Sync>;

struct Subscriber {
    id: u64,
    cb: StateCallback,
}

/// The connectivity of one channel.
pub(crate) struct Connectivity {
    me: std::sync::Weak<Connectivity>,
    /// Names the channel in log lines.
    label: String,
    state_tx: watch::Sender<ConnectivityState>,
    subs: Mutex<Vec<Subscriber>>,
    next_sub: AtomicU64,
    /// Held while callbacks run (`unsubscribe` waits on it).
    delivery: Mutex<()>,
    /// Notifications in order: each names the subscribers to tell (fixed
    /// when queued, so a new subscriber never sees changes from before it
    /// existed).
    serial: Arc<Serial>,
}

thread_local! {
    /// Set while this thread runs state callbacks (so `unsubscribe` from a
    /// callback does not wait for itself).
    static IN_DELIVERY: Cell<bool> = const { Cell::new(false) };
}

impl Connectivity {
    pub(crate) fn new(label: String) -> Arc<Connectivity> {
        Arc::new_cyclic(|me| Connectivity {
            me: me.clone(),
            label,
            state_tx: watch::channel(ConnectivityState::Idle).0,
            subs: Mutex::new(Vec::new()),
            next_sub: AtomicU64::new(1),
            delivery: Mutex::new(()),
            serial: Serial::new(),
        })
    }

    /// The current state.
    pub(crate) fn state(&self) -> ConnectivityState {
        *self.state_tx.borrow()
    }

    /// Moves to `to` and tells subscribers (no-op when unchanged or after
    /// SHUTDOWN). `before_publish` runs under the subscriber lock just
    /// before the new state is visible (the policy updates what must be
    /// seen together with it). Returns false when nothing changed.
    pub(crate) fn set_state(&self, to: ConnectivityState, before_publish: impl FnOnce()) -> bool {
        // Every change happens under the subscriber lock, with its queueing:
        // `subscribe` sees either the old state and then this change, or the
        // new state only — never a change twice.
        {
            let subs = lock(&self.subs);
            let cur = *self.state_tx.borrow();
            if cur == to || cur == ConnectivityState::Shutdown {
                return false;
            }
            before_publish();
            self.state_tx.send_replace(to);
            // Without subscribers nothing is queued: no delivery thread.
            if !subs.is_empty() {
                self.notify(subs.iter().map(|s| s.id).collect(), to);
            }
        }
        trace!(
            Tracer::ConnectivityState,
            Level::Info,
            "channel {} is {to}",
            self.label
        );
        true
    }

    /// Waits until the state is `want` or SHUTDOWN; returns the state
    /// reached.
    pub(crate) async fn wait_for(&self, want: ConnectivityState) -> ConnectivityState {
        let mut rx = self.state_tx.subscribe();
        let r = rx
            .wait_for(|s| *s == want || *s == ConnectivityState::Shutdown)
            .await
            .map(|s| *s)
            .unwrap_or(ConnectivityState::Shutdown);
        r
    }

    /// Waits until the state differs from `from`; returns the new state.
    pub(crate) async fn wait_for_change(&self, from: ConnectivityState) -> ConnectivityState {
        let mut rx = self.state_tx.subscribe();
        rx.wait_for(|s| *s != from)
            .await
            .map(|s| *s)
            .unwrap_or(ConnectivityState::Shutdown)
    }

    /// Adds a subscriber; it is first told the current state, then every
    /// change. Returns its id.
    pub(crate) fn subscribe(&self, cb: StateCallback) -> u64 {
        let id = self.next_sub.fetch_add(1, Ordering::Relaxed);
        {
            // Read the state and queue it under the subscriber lock: every
            // later change is queued (for this subscriber too) after it.
            let mut subs = lock(&self.subs);
            subs.push(Subscriber { id, cb });
            self.notify(vec![id], self.state());
        }
        id
    }

    /// Removes a subscriber. When this returns, its callback is not running
    /// (unless called from that callback) and will not run again.
    pub(crate) fn unsubscribe(&self, id: u64) -> bool {
        let found = {
            let mut subs = lock(&self.subs);
            let n = subs.len();
            subs.retain(|s| s.id != id);
            subs.len() != n
        };
        if !IN_DELIVERY.with(|f| f.get()) {
            drop(lock(&self.delivery));
        }
        found
    }

    /// Queues telling `ids` about `state`.
    fn notify(&self, ids: Vec<u64>, state: ConnectivityState) {
        let me = self.me.clone();
        self.serial.push(Box::new(move || {
            if let Some(c) = me.upgrade() {
                c.deliver(ids, state);
            }
        }));
    }

    /// Runs the callbacks of `ids` with `state`, under the delivery lock.
    fn deliver(&self, ids: Vec<u64>, state: ConnectivityState) {
        let _g = lock(&self.delivery);
        IN_DELIVERY.with(|f| f.set(true));
        for id in ids {
            // Looked up again for each: an unsubscribed callback never runs.
            let cb = lock(&self.subs)
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.cb.clone());
            if let Some(cb) = cb {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(state)));
            }
        }
        IN_DELIVERY.with(|f| f.set(false));
    }
}
