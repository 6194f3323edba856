//! Per-call statistics, readable while the call runs and after it ended:
//! attempts, messages and bytes each way (as the application sees them and
//! on the wire: gRPC frames, 5-byte prefix included, compressed when the
//! message was), the time spent waiting for a connection (the pick), the
//! time to the response headers, and the call's time so far.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

/// Not yet measured.
const UNSET: u64 = u64::MAX;

/// The counters of one call (relaxed atomics: a few per message).
pub(crate) struct CallStats {
    started: Instant,
    attempts: AtomicU32,
    retries: AtomicU32,
    transparent_retries: AtomicU32,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    wire_bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
    wire_bytes_received: AtomicU64,
    /// Microseconds from the start; UNSET until then.
    pick_wait_us: AtomicU64,
    first_response_us: AtomicU64,
    ended_us: AtomicU64,
}

/// A call's statistics at one moment (see [`crate::Call::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallStatsSnapshot {
    /// HTTP/2 streams opened for the call (more than one with retries).
    pub attempts: u32,
    /// Retries made by the service config's retry policy (each counts
    /// against its `maxAttempts`).
    pub retries: u32,
    /// Transparent retries: the request had not reached the server's
    /// application (a connection that failed before it left, a refused
    /// stream); not counted against `maxAttempts`.
    pub transparent_retries: u32,
    /// Messages handed to the call to send, and their bytes.
    pub messages_sent: u64,
    pub bytes_sent: u64,
    /// Bytes of those messages in gRPC frames (prefix included, compressed).
    pub wire_bytes_sent: u64,
    /// Messages received and their bytes after decompression.
    pub messages_received: u64,
    pub bytes_received: u64,
    /// Bytes of the received gRPC frames (prefix included, as sent).
    pub wire_bytes_received: u64,
    /// Time from the start of the call until a connection was picked.
    pub pick_wait: Option<Duration>,
    /// Time from the start of the call until the response headers.
    pub time_to_first_response: Option<Duration>,
    /// Time from the start of the call until its end (until now while it
    /// runs).
    pub total: Duration,
    /// True once the call has ended.
    pub ended: bool,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(UNSET - 1)
}

impl CallStats {
    pub(crate) fn new() -> CallStats {
        CallStats {
            started: Instant::now(),
            attempts: AtomicU32::new(0),
            retries: AtomicU32::new(0),
            transparent_retries: AtomicU32::new(0),
            messages_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            wire_bytes_sent: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            wire_bytes_received: AtomicU64::new(0),
            pick_wait_us: AtomicU64::new(UNSET),
            first_response_us: AtomicU64::new(UNSET),
            ended_us: AtomicU64::new(UNSET),
        }
    }

    fn mark(&self, at: &AtomicU64) {
        let _ = at.compare_exchange(UNSET, us(self.started.elapsed()), Relaxed, Relaxed);
    }

    pub(crate) fn sent(&self, plain: usize, wire: usize) {
        self.messages_sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(plain as u64, Relaxed);
        self.wire_bytes_sent.fetch_add(wire as u64, Relaxed);
    }

    pub(crate) fn received(&self, plain: usize, wire: usize) {
        self.messages_received.fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(plain as u64, Relaxed);
        self.wire_bytes_received.fetch_add(wire as u64, Relaxed);
    }

    /// A connection was picked for an attempt.
    pub(crate) fn picked(&self) {
        self.mark(&self.pick_wait_us);
    }

    /// An attempt's stream was opened.
    pub(crate) fn attempt_opened(&self) {
        self.attempts.fetch_add(1, Relaxed);
    }

    /// A retry by the retry policy.
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// A transparent retry.
    pub(crate) fn transparent_retry(&self) {
        self.transparent_retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn first_response(&self) {
        self.mark(&self.first_response_us);
    }

    pub(crate) fn ended(&self) {
        self.mark(&self.ended_us);
    }

    pub(crate) fn snapshot(&self) -> CallStatsSnapshot {
        let opt = |a: &AtomicU64| match a.load(Relaxed) {
            UNSET => None,
            v => Some(Duration::from_micros(v)),
        };
        let ended = opt(&self.ended_us);
        CallStatsSnapshot {
            attempts: self.attempts.load(Relaxed),
            retries: self.retries.load(Relaxed),
            transparent_retries: self.transparent_retries.load(Relaxed),
            messages_sent: self.messages_sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            wire_bytes_sent: self.wire_bytes_sent.load(Relaxed),
            messages_received: self.messages_received.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            wire_bytes_received: self.wire_bytes_received.load(Relaxed),
            pick_wait: opt(&self.pick_wait_us),
            time_to_first_response: opt(&self.first_response_us),
            total: ended.unwrap_or_else(|| self.started.elapsed()),
            ended: ended.is_some(),
        }
    }
}
