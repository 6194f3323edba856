//! The channel's active calls: a registry the channel can cancel on
//! `close`, and the counts the idle timer and keepalive read.

use crate::sync::lock;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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
    calls: HashMap<u64, Weak<dyn ActiveCall>, BuildHasherDefault<IdHasher>>,
    /// When the last call ended (meaningful while `calls` is empty).
    idle_since: Instant,
    /// The idle timer waits for the last call to end (see [`Calls::idle`]).
    waiting_for_empty: bool,
}

/// Hashes the registry's keys, ids counted up from 1 (no attacker chooses
/// them): one multiplication instead of SipHash's rounds per call.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The active calls of one channel.
pub(crate) struct Calls {
    reg: Mutex<Registry>,
    closed: AtomicBool,
    next_id: AtomicU64,
    /// Calls started and frames with headers or data sent (counted while
    /// keepalive is on): keepalive's sign of activity.
    activity: AtomicU64,
    /// Woken when the last call ends while the idle timer waits for it.
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
                calls: HashMap::default(),
                idle_since: Instant::now(),
                waiting_for_empty: false,
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
        let wake = {
            let mut reg = lock(&self.reg);
            if reg.calls.remove(&id).is_none() {
                return;
            }
            if !reg.calls.is_empty() {
                return;
            }
            reg.idle_since = Instant::now();
            std::mem::take(&mut reg.waiting_for_empty)
        };
        if wake {
            self.changed.notify_waiters();
        }
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

    /// Completes when there have been no calls for `timeout`. Calls
    /// starting and ending do not wake it (a wake-up of the channel's task
    /// per call would cost a unary call more than the call's own work in
    /// the runtime): it looks again when the timeout since the last call
    /// has passed, and is woken only when it waits for the last call to end.
    pub(crate) async fn idle(&self, timeout: std::time::Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let since = {
                let mut reg = lock(&self.reg);
                let busy = !reg.calls.is_empty();
                reg.waiting_for_empty = busy;
                (!busy).then_some(reg.idle_since)
            };
            let Some(since) = since else {
                changed.await;
                continue;
            };
            let deadline = since + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}
