//! Keepalive (`doc/keepalive.md` in the grpc/grpc repository): PINGs every
//! period on each connection while allowed; a PING unanswered within the
//! timeout closes the connection (its calls end UNAVAILABLE). The period
//! doubles for the channel each time a server says the client pings too
//! often (GOAWAY ENHANCE_YOUR_CALM "too_many_pings").

use super::calls::Calls;
use super::connection::Killer;
use super::options::ConnectionConfig;
use crate::log::{Level, Tracer};
use crate::rt;
use crate::sync::lock;
use crate::trace;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The keepalive settings of a channel and its period now in force.
pub(crate) struct Keepalive {
    /// How long a ping may go unanswered.
    timeout: Duration,
    /// Ping even with no active calls.
    permit_without_calls: bool,
    /// Pings allowed with no call activity in between (0 = no limit).
    max_pings_without_data: u32,
    /// None = no pings.
    period: Mutex<Option<Duration>>,
    /// For the channel's snapshot: pings answered, pings unanswered.
    pub(crate) pings: std::sync::atomic::AtomicU64,
    pub(crate) timeouts: std::sync::atomic::AtomicU64,
    pub(crate) too_many_pings_seen: std::sync::atomic::AtomicU64,
}

impl Keepalive {
    pub(crate) fn new(cfg: &ConnectionConfig) -> Arc<Keepalive> {
        Arc::new(Keepalive {
            timeout: cfg.keepalive_timeout,
            permit_without_calls: cfg.keepalive_permit_without_calls,
            max_pings_without_data: cfg.max_pings_without_data,
            period: Mutex::new(cfg.keepalive_time),
            pings: Default::default(),
            timeouts: Default::default(),
            too_many_pings_seen: Default::default(),
        })
    }

    /// The ping period now in force (None = no pings).
    pub(crate) fn period(&self) -> Option<Duration> {
        *lock(&self.period)
    }

    /// A server said the client pings too often: double the period.
    pub(crate) fn too_many_pings(&self) {
        self.too_many_pings_seen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut p = lock(&self.period);
        if let Some(t) = *p {
            *p = Some(t * 2);
            trace!(
                Tracer::HttpKeepalive,
                Level::Info,
                "server sent GOAWAY ENHANCE_YOUR_CALM (too_many_pings): keepalive time doubled to {} ms",
                (t * 2).as_millis()
            );
        }
    }

    /// Starts pinging on a new connection, when keepalive is on.
    pub(crate) fn start(
        self: &Arc<Self>,
        pp: Option<h2::PingPong>,
        killer: Killer,
        calls: Weak<Calls>,
    ) {
        let (Some(period), Some(pp)) = (self.period(), pp) else {
            return;
        };
        if let Ok(h) = rt::handle() {
            h.spawn(run(Arc::downgrade(self), calls, pp, killer, period));
        }
    }
}

/// Pings every period while allowed; closes the connection when a ping is
/// not answered in time.
async fn run(
    ka: Weak<Keepalive>,
    calls: Weak<Calls>,
    mut pp: h2::PingPong,
    killer: Killer,
    period: Duration,
) {
    let mut pings_since_activity = 0u32;
    let mut last_activity = u64::MAX;
    loop {
        let Some(k) = ka.upgrade() else { return };
        let period = k.period().unwrap_or(period);
        drop(k);
        tokio::time::sleep(period).await;
        let (Some(k), Some(c)) = (ka.upgrade(), calls.upgrade()) else {
            return;
        };
        if killer.is_dead() {
            return;
        }
        let act = c.activity();
        if act != last_activity {
            last_activity = act;
            pings_since_activity = 0;
        }
        if c.active() == 0 && !k.permit_without_calls {
            continue;
        }
        let max = k.max_pings_without_data;
        if max > 0 && pings_since_activity >= max {
            continue;
        }
        let timeout = k.timeout;
        drop(c);
        match tokio::time::timeout(timeout, pp.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {
                trace!(
                    Tracer::HttpKeepalive,
                    Level::Debug,
                    "keepalive ping answered"
                );
                k.pings.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                pings_since_activity += 1
            }
            Ok(Err(_)) => return, // the connection is gone anyway
            Err(_) => {
                k.timeouts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                trace!(
                    Tracer::HttpKeepalive,
                    Level::Info,
                    "keepalive ping unanswered within {} ms: closing the connection",
                    timeout.as_millis()
                );
                killer.kill(&format!(
                    "keepalive ping not answered within {} ms",
                    timeout.as_millis()
                ));
                return;
            }
        }
    }
}
