//! The channel's active calls: a registry the channel can cancel on
//! `close`, and the counts the idle timer and keepalive read.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;
use tokio::time::Instant;

/// A call the channel can end when it is closed. The call module
/// implements it: the channel never depends on the call.
pub(crate) trait ActiveCall: Send + Sync {
    /// Ends the call with CANCELLED ("channel closed").
    fn cancel_for_close(&self);
}

struct Registry {
    calls: HashMap<u64, Weak<dyn ActiveCall>>,
    /// When the last call ended (meaningful while `calls` is empty).
    idle_since: Instant,
}

/// The active calls of one channel.
pub(crate) struct Calls {
    reg: Mutex<Registry>,
    closed: AtomicBool,
    next_id: AtomicU64,
    /// Calls started and frames with headers or data sent (counted while
    /// keepalive is on): keepalive's sign of activity.
    activity: AtomicU64,
    /// Woken whenever a call starts or ends.
    changed: Notify,
    /// Counts for the channel's snapshot.
    pub(crate) started: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Calls whose stream is open (opened, call not ended yet).
    pub(crate) streams: AtomicU64,
}

impl Calls {
    pub(crate) fn new() -> Calls {
        Calls {
            reg: Mutex::new(Registry {
                calls: HashMap::new(),
                idle_since: Instant::now(),
            }),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            activity: AtomicU64::new(0),
            changed: Notify::new(),
            started: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            streams: AtomicU64::new(0),
        }
    }

    /// Registers an active call; fails when the channel is closed.
    pub(crate) fn register(&self, call: Weak<dyn ActiveCall>) -> Result<u64, ()> {
        let id = {
            let mut reg = lock(&self.reg);
            if self.is_closed() {
                return Err(());
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            reg.calls.insert(id, call);
            id
        };
        self.started.fetch_add(1, Ordering::Relaxed);
        self.note_activity();
        self.changed.notify_waiters();
        Ok(id)
    }

    /// A call ended: `ok` with status OK; `had_stream` when its stream
    /// had been opened.
    pub(crate) fn unregister(&self, id: u64, ok: bool, had_stream: bool) {
        let n = if ok { &self.succeeded } else { &self.failed };
        n.fetch_add(1, Ordering::Relaxed);
        if had_stream {
            self.streams.fetch_sub(1, Ordering::Relaxed);
        }
        {
            let mut reg = lock(&self.reg);
            if reg.calls.remove(&id).is_none() {
                return;
            }
            if reg.calls.is_empty() {
                reg.idle_since = Instant::now();
            }
        }
        self.changed.notify_waiters();
    }

    /// Refuses new calls and returns the active ones (to cancel); None
    /// when it was already closed.
    pub(crate) fn close(&self) -> Option<Vec<Arc<dyn ActiveCall>>> {
        let mut reg = lock(&self.reg);
        if self.closed.swap(true, Ordering::SeqCst) {
            return None;
        }
        Some(reg.calls.drain().filter_map(|(_, w)| w.upgrade()).collect())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Number of calls that have started and not yet ended.
    pub(crate) fn active(&self) -> usize {
        lock(&self.reg).calls.len()
    }

    /// Something was sent (a call's headers or data): keepalive's ping
    /// budget starts again, as in C-core.
    pub(crate) fn note_activity(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }

    /// Activity so far (see [`Calls::note_activity`]).
    pub(crate) fn activity(&self) -> u64 {
        self.activity.load(Ordering::Relaxed)
    }

    /// True when there have been no calls for `t`.
    pub(crate) fn idle_for(&self, t: std::time::Duration) -> bool {
        let reg = lock(&self.reg);
        reg.calls.is_empty() && reg.idle_since.elapsed() >= t
    }

    /// Completes when there have been no calls for `timeout`.
    pub(crate) async fn idle(&self, timeout: std::time::Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (busy, since) = {
                let reg = lock(&self.reg);
                (!reg.calls.is_empty(), reg.idle_since)
            };
            if busy {
                changed.await;
                continue;
            }
            let deadline = since + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = changed => {}
            }
        }
    }
}
