//! The channel's control task: it runs the resolver and hands its answers
//! to the load-balancing policy, resolves again when the policy asks
//! (no sooner than `grpc.dns_min_time_between_resolutions_ms` after the
//! last resolution; after a failed one, on a backoff), and puts the policy
//! to IDLE after the idle timeout without calls (`grpc.client_idle_timeout_ms`).
//!
//! The task starts with the first request for a connection and ends when
//! the channel is shut down. While the channel is IDLE it only waits.

use super::backoff::{Backoff, BackoffConfig};
use super::calls::Calls;
use super::policy::{Helper, Policy};
use super::resolver::Resolver;
use crate::log::{Level, Tracer};
use crate::rt;
use crate::sync::lock;
use crate::trace;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// C-core's default `grpc.dns_min_time_between_resolutions_ms`.
pub(crate) const DEFAULT_MIN_RESOLUTION_INTERVAL: Duration = Duration::from_secs(30);

struct Inner {
    /// Out of IDLE: resolve and keep the policy's endpoints current.
    active: bool,
    /// Counts the times out of IDLE (each starts with a resolution).
    epoch: u64,
    /// The policy asked for a new resolution.
    resolve_wanted: bool,
    task_started: bool,
    shutdown: bool,
}

/// The last resolution, for the channel's snapshot.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResolutionInfo {
    /// Resolutions run so far.
    pub(crate) count: u64,
    /// The addresses of the last answer that had any, as peers.
    pub(crate) addresses: Vec<String>,
    /// Why the last resolution found nothing (None when it did).
    pub(crate) error: Option<String>,
}

/// Drives the resolver and the idle timer of one channel.
pub(crate) struct Control {
    me: Weak<Control>,
    resolver: Resolver,
    policy: OnceLock<Arc<dyn Policy>>,
    calls: Arc<Calls>,
    idle_timeout: Option<Duration>,
    min_interval: Duration,
    inner: Mutex<Inner>,
    kick: Notify,
    resolution: Mutex<ResolutionInfo>,
}

impl Control {
    /// A control for `resolver`; `make_policy` is given the helper the
    /// policy talks back to.
    pub(crate) fn new(
        resolver: Resolver,
        calls: Arc<Calls>,
        idle_timeout: Option<Duration>,
        min_interval: Duration,
        make_policy: impl FnOnce(Weak<dyn Helper>) -> Arc<dyn Policy>,
    ) -> Arc<Control> {
        let c = Arc::new_cyclic(|me: &Weak<Control>| Control {
            me: me.clone(),
            resolver,
            policy: OnceLock::new(),
            calls,
            idle_timeout,
            min_interval,
            inner: Mutex::new(Inner {
                active: false,
                epoch: 0,
                resolve_wanted: false,
                task_started: false,
                shutdown: false,
            }),
            kick: Notify::new(),
            resolution: Mutex::new(ResolutionInfo::default()),
        });
        let helper: Weak<dyn Helper> = c.me.clone();
        let _ = c.policy.set(make_policy(helper));
        c
    }

    /// The last resolution.
    pub(crate) fn resolution(&self) -> ResolutionInfo {
        lock(&self.resolution).clone()
    }

    pub(crate) fn policy(&self) -> &Arc<dyn Policy> {
        self.policy.get().expect("set in new")
    }

    /// The channel is closed: stop the task, shut the policy down.
    pub(crate) fn shutdown(&self) {
        lock(&self.inner).shutdown = true;
        self.kick.notify_one();
        self.policy().shutdown();
    }

    /// Completes after `t` without calls, counted from `since` at the
    /// earliest (when the channel left IDLE).
    async fn idle_after(&self, t: Duration, since: Instant) {
        loop {
            self.calls.idle(t).await;
            let earliest = since + t;
            if Instant::now() >= earliest {
                return;
            }
            tokio::time::sleep_until(earliest).await;
            if self.calls.idle_for(t) {
                return;
            }
        }
    }
}

impl Helper for Control {
    fn request_resolution(&self) {
        lock(&self.inner).resolve_wanted = true;
        self.kick.notify_one();
    }

    fn exit_idle(&self) {
        let start = {
            let mut g = lock(&self.inner);
            if g.shutdown {
                return;
            }
            if !g.active {
                g.active = true;
                g.epoch += 1;
            }
            !std::mem::replace(&mut g.task_started, true)
        };
        if start {
            if let (Some(me), Ok(h)) = (self.me.upgrade(), rt::handle()) {
                h.spawn(run(me));
            }
        }
        self.kick.notify_one();
        self.policy().exit_idle();
    }
}

/// Backoff between failed resolutions (C-core's resolver retry backoff).
fn retry_backoff() -> Backoff {
    Backoff::new(BackoffConfig {
        initial: Duration::from_secs(1),
        multiplier: 1.6,
        jitter: 0.2,
        max: Duration::from_secs(120),
        min_connect_timeout: Duration::ZERO,
    })
}

async fn run(c: Arc<Control>) {
    let target = c.resolver.target().authority.clone();
    // Per time out of IDLE.
    let mut epoch = 0;
    let mut resolved = false;
    let mut last: Option<Instant> = None;
    let mut retry_at: Option<Instant> = None;
    let mut retries = retry_backoff();
    let mut active_since = Instant::now();
    loop {
        let kicked = c.kick.notified();
        tokio::pin!(kicked);
        kicked.as_mut().enable();
        let (active, wanted, now_epoch) = {
            let g = lock(&c.inner);
            if g.shutdown {
                return;
            }
            (g.active, g.resolve_wanted, g.epoch)
        };
        if !active {
            kicked.await;
            continue;
        }
        if now_epoch != epoch {
            epoch = now_epoch;
            resolved = false;
            active_since = Instant::now();
        }
        let now = Instant::now();
        let due = if !resolved {
            Some(now)
        } else if wanted {
            // Rate-limited; a pending retry after a failure comes first.
            let earliest = last.map_or(now, |l| l + c.min_interval);
            Some(retry_at.map_or(earliest, |r| r.min(earliest)))
        } else {
            retry_at
        };
        if due.is_some_and(|d| d <= now) {
            lock(&c.inner).resolve_wanted = false;
            retry_at = None;
            let res = tokio::select! {
                r = c.resolver.resolve() => r,
                _ = async {
                    while !lock(&c.inner).shutdown {
                        c.kick.notified().await;
                    }
                } => return,
            };
            last = Some(Instant::now());
            resolved = true;
            if !lock(&c.inner).active {
                continue; // went IDLE meanwhile: resolve again on leaving it
            }
            {
                let mut info = lock(&c.resolution);
                info.count += 1;
                if res.endpoints.is_empty() {
                    info.error = Some(res.failure(&target).message().to_string());
                } else {
                    info.error = None;
                    info.addresses = res.endpoints.iter().map(|e| e.peer()).collect();
                }
            }
            if res.endpoints.is_empty() {
                let st = res.failure(&target);
                trace!(Tracer::Resolver, Level::Info, "{}", st.message());
                c.policy().resolver_error(st);
                retry_at = Some(Instant::now() + retries.next_attempt().0);
            } else {
                retries.reset();
                trace!(
                    Tracer::Resolver,
                    Level::Info,
                    "resolved {target}: {}",
                    res.endpoints
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                c.policy().update(res.endpoints);
            }
            continue;
        }
        let sleep_until = due.unwrap_or_else(|| now + Duration::from_secs(86400));
        let idle = async {
            match c.idle_timeout {
                Some(t) => c.idle_after(t, active_since).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = kicked => {}
            _ = tokio::time::sleep_until(sleep_until) => {}
            _ = idle => {
                lock(&c.inner).active = false;
                trace!(
                    Tracer::ConnectivityState,
                    Level::Info,
                    "channel {target}: no calls for the idle timeout: IDLE"
                );
                c.policy().enter_idle();
            }
        }
    }
}
