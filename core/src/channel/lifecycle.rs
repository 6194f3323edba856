//! The channel's connection lifecycle: one manager task per channel owns
//! the connection and walks the connectivity state machine
//! (`doc/connectivity-semantics-and-api.md`):
//!
//! * IDLE → CONNECTING when a call (or `connect`) asks for a connection;
//! * CONNECTING → READY, or → TRANSIENT_FAILURE when the attempt fails;
//! * TRANSIENT_FAILURE → CONNECTING when the backoff has passed
//!   (`doc/connection-backoff.md`), or → IDLE after the idle timeout;
//! * READY → TRANSIENT_FAILURE when the connection breaks (keepalive
//!   timeout, socket error) — then a fresh backoff sequence starts at once;
//! * READY → IDLE after the idle timeout, or on GOAWAY with no calls;
//! * any → SHUTDOWN on `close`.
//!
//! Calls ask for a connection with [`Lifecycle::connection_for_call`]:
//! fail-fast calls end with UNAVAILABLE in TRANSIENT_FAILURE; wait-for-ready
//! calls wait for READY. Subscribers get every change, in order, from one
//! delivery thread at a time.

use super::backoff::{Backoff, BackoffConfig};
use super::connection::{connect, Connection};
use super::state::ConnectivityState;
use super::target::Target;
use crate::credentials::Transport;
use crate::rt::{self, Lend};
use crate::status::{Code, Status};
use crate::sync::lock;
use bytes::Bytes;
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Settings of the lifecycle (from channel options).
#[derive(Clone, Debug, PartialEq)]
pub struct LifecycleConfig {
    pub backoff: BackoffConfig,
    /// Ping period (`grpc.keepalive_time_ms`; None = no pings, the default).
    pub keepalive_time: Option<Duration>,
    /// How long a ping may go unanswered (`grpc.keepalive_timeout_ms`, 20 s).
    pub keepalive_timeout: Duration,
    /// Ping even with no active calls (`grpc.keepalive_permit_without_calls`).
    pub keepalive_permit_without_calls: bool,
    /// Pings allowed with no call activity in between
    /// (`grpc.http2.max_pings_without_data`, default 2; 0 = no limit).
    pub max_pings_without_data: u32,
    /// Close the connection after this long without calls
    /// (`grpc.client_idle_timeout_ms`, default 30 min; None = never).
    pub idle_timeout: Option<Duration>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            backoff: BackoffConfig::default(),
            keepalive_time: None,
            keepalive_timeout: Duration::from_secs(20),
            keepalive_permit_without_calls: false,
            max_pings_without_data: 2,
            idle_timeout: Some(Duration::from_secs(30 * 60)),
        }
    }
}

/// Where and how to connect.
pub(crate) struct ConnectParams {
    pub(crate) target: Target,
    pub(crate) transport: Transport,
    pub(crate) tls_name: Option<ServerName<'static>>,
}

/// A connectivity-state callback.
pub type StateCallback = Arc<dyn Fn(ConnectivityState) + Send + Sync>;

struct Subscriber {
    id: u64,
    cb: StateCallback,
}

struct Inner {
    conn: Option<Connection>,
    last_error: Option<Status>,
    manager_started: bool,
    connect_requested: bool,
    reset_backoff: bool,
    keepalive_time: Option<Duration>,
    active_calls: usize,
    idle_since: Instant,
    /// Set on TRANSIENT_FAILURE, cleared on READY or IDLE: while set, the
    /// channel is retrying after a failure and fail-fast calls end at once
    /// even in the CONNECTING of a retry (which may follow TRANSIENT_FAILURE
    /// within an instant when an attempt outlasts its backoff) — the
    /// "sticky" failure of gRFC A62.
    failing: bool,
}

thread_local! {
    /// Set while this thread runs state callbacks (so `unsubscribe` from a
    /// callback does not wait for itself).
    static IN_DELIVERY: Cell<bool> = const { Cell::new(false) };
}

/// The lifecycle of one channel's connection.
pub(crate) struct Lifecycle {
    me: std::sync::Weak<Lifecycle>,
    cfg: LifecycleConfig,
    params: ConnectParams,
    state_tx: watch::Sender<ConnectivityState>,
    inner: Mutex<Inner>,
    kick: Notify,
    calls_changed: Notify,
    activity: AtomicU64,
    subs: Mutex<Vec<Subscriber>>,
    next_sub: AtomicU64,
    delivery: Mutex<()>,
    /// Queued notifications: the subscribers to tell (fixed when queued,
    /// so a new subscriber never sees changes from before it existed).
    queue: Mutex<VecDeque<(Vec<u64>, ConnectivityState)>>,
    draining: AtomicBool,
}

fn verbose() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        std::env::var("RGRPC_VERBOSITY")
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "debug" | "info"))
            .unwrap_or(false)
    })
}

/// Logs to stderr when `RGRPC_VERBOSITY=info` (or `debug`) is set; silent
/// otherwise.
pub(crate) fn log(msg: &str) {
    if verbose() {
        eprintln!("rgrpc: {msg}");
    }
}

impl Lifecycle {
    pub(crate) fn new(cfg: LifecycleConfig, params: ConnectParams) -> Arc<Lifecycle> {
        let ka = cfg.keepalive_time;
        Arc::new_cyclic(|me| Lifecycle {
            me: me.clone(),
            cfg,
            params,
            state_tx: watch::channel(ConnectivityState::Idle).0,
            inner: Mutex::new(Inner {
                conn: None,
                last_error: None,
                manager_started: false,
                connect_requested: false,
                reset_backoff: false,
                keepalive_time: ka,
                active_calls: 0,
                idle_since: Instant::now(),
                failing: false,
            }),
            kick: Notify::new(),
            calls_changed: Notify::new(),
            activity: AtomicU64::new(0),
            subs: Mutex::new(Vec::new()),
            next_sub: AtomicU64::new(1),
            delivery: Mutex::new(()),
            queue: Mutex::new(VecDeque::new()),
            draining: AtomicBool::new(false),
        })
    }

    /// The current state.
    pub(crate) fn state(&self) -> ConnectivityState {
        *self.state_tx.borrow()
    }

    /// The current keepalive period (it doubles after a too_many_pings GOAWAY).
    pub(crate) fn keepalive_time(&self) -> Option<Duration> {
        lock(&self.inner).keepalive_time
    }

    /// Asks for a connection: IDLE → CONNECTING (starting the manager).
    pub(crate) fn request_connect(self: &Arc<Self>) {
        {
            let mut g = lock(&self.inner);
            g.connect_requested = true;
            if !g.manager_started && self.state() != ConnectivityState::Shutdown {
                g.manager_started = true;
                if let Ok(h) = rt::handle() {
                    h.spawn(run(self.clone()));
                }
            }
        }
        self.kick.notify_one();
    }

    /// Skips the rest of a backoff: TRANSIENT_FAILURE → CONNECTING now.
    pub(crate) fn reset_backoff(self: &Arc<Self>) {
        lock(&self.inner).reset_backoff = true;
        self.request_connect();
    }

    fn set_state(&self, to: ConnectivityState) {
        // Every change happens under the subscriber lock, with its queueing:
        // `subscribe` sees either the old state and then this change, or the
        // new state only — never a change twice. `failing` is updated before
        // the state is published, so woken callers see both together.
        {
            let subs = lock(&self.subs);
            let cur = *self.state_tx.borrow();
            if cur == to || cur == ConnectivityState::Shutdown {
                return;
            }
            match to {
                ConnectivityState::TransientFailure => lock(&self.inner).failing = true,
                ConnectivityState::Ready | ConnectivityState::Idle => {
                    lock(&self.inner).failing = false
                }
                _ => {}
            }
            self.state_tx.send_replace(to);
            if !subs.is_empty() {
                lock(&self.queue).push_back((subs.iter().map(|s| s.id).collect(), to));
            }
        }
        log(&format!("channel {} is {to}", self.params.target.authority));
        // Without subscribers nothing is queued: no delivery thread.
        if !lock(&self.queue).is_empty() {
            self.start_drain();
        }
    }

    /// SHUTDOWN: final; the connection is closed and every waiter woken.
    pub(crate) fn shutdown(&self) {
        self.set_state(ConnectivityState::Shutdown);
        if let Some(c) = lock(&self.inner).conn.take() {
            c.abort("channel closed");
        }
        self.kick.notify_one();
    }

    /// A call started (counts for keepalive and the idle timer).
    pub(crate) fn call_started(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner).active_calls += 1;
        self.calls_changed.notify_waiters();
    }

    /// A call ended.
    pub(crate) fn call_ended(&self) {
        {
            let mut g = lock(&self.inner);
            g.active_calls = g.active_calls.saturating_sub(1);
            if g.active_calls == 0 {
                g.idle_since = Instant::now();
            }
        }
        self.calls_changed.notify_waiters();
    }

    fn active_calls(&self) -> usize {
        lock(&self.inner).active_calls
    }

    /// A stream handle on the READY connection, waiting (and asking to
    /// connect) as the state requires. Fail-fast calls end with UNAVAILABLE
    /// in TRANSIENT_FAILURE; `wait_for_ready` calls wait for READY. The
    /// caller bounds the wait with its deadline.
    pub(crate) async fn connection_for_call(
        self: &Arc<Self>,
        wait_for_ready: bool,
    ) -> Result<(SendRequest<Bytes>, Arc<dyn Lend>), Status> {
        let mut rx = self.state_tx.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            match state {
                ConnectivityState::Ready => {
                    if let Some(c) = lock(&self.inner).conn.as_ref().filter(|c| c.is_alive()) {
                        return Ok((c.send.clone(), c.lend.clone()));
                    }
                }
                ConnectivityState::Idle => self.request_connect(),
                ConnectivityState::Connecting | ConnectivityState::TransientFailure => {
                    let failing =
                        state == ConnectivityState::TransientFailure || lock(&self.inner).failing;
                    if failing && !wait_for_ready {
                        let e = lock(&self.inner).last_error.clone();
                        return Err(e.unwrap_or_else(|| {
                            Status::new(Code::Unavailable, "channel is in TRANSIENT_FAILURE")
                        }));
                    }
                }
                ConnectivityState::Shutdown => {
                    return Err(Status::new(Code::Cancelled, "channel closed"));
                }
            }
            if rx.changed().await.is_err() {
                return Err(Status::new(Code::Cancelled, "channel closed"));
            }
        }
    }

    /// The connection went bad while opening a stream (GOAWAY, reset):
    /// stop using it; the manager replaces it.
    pub(crate) fn connection_failed(&self, reason: &str, graceful: bool) {
        if let Some(c) = lock(&self.inner).conn.as_ref() {
            c.mark_dead(reason, graceful);
        }
    }

    /// Waits until the state is `want` or SHUTDOWN (asking to connect when
    /// `want` is READY); returns the state reached.
    pub(crate) async fn wait_for(self: &Arc<Self>, want: ConnectivityState) -> ConnectivityState {
        if want == ConnectivityState::Ready {
            self.request_connect();
        }
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
    pub(crate) fn subscribe(self: &Arc<Self>, cb: StateCallback, try_to_connect: bool) -> u64 {
        let id = self.next_sub.fetch_add(1, Ordering::Relaxed);
        {
            // Read the state and queue it under the subscriber lock: every
            // later change is queued (for this subscriber too) after it.
            let mut subs = lock(&self.subs);
            subs.push(Subscriber { id, cb });
            lock(&self.queue).push_back((vec![id], self.state()));
        }
        self.start_drain();
        if try_to_connect && self.state() == ConnectivityState::Idle {
            self.request_connect();
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

    fn start_drain(&self) {
        if !self.draining.swap(true, Ordering::AcqRel) {
            match (self.me.upgrade(), rt::handle()) {
                (Some(me), Ok(h)) => {
                    h.spawn_blocking(move || drain(&me));
                }
                _ => self.draining.store(false, Ordering::Release),
            }
        }
    }
}

/// Runs queued state notifications in order, on a blocking-pool thread,
/// under the delivery lock (which `unsubscribe` waits on).
fn drain(lc: &Lifecycle) {
    loop {
        let item = lock(&lc.queue).pop_front();
        let Some((ids, state)) = item else {
            lc.draining.store(false, Ordering::Release);
            if lock(&lc.queue).is_empty() || lc.draining.swap(true, Ordering::AcqRel) {
                return;
            }
            continue;
        };
        let _g = lock(&lc.delivery);
        IN_DELIVERY.with(|f| f.set(true));
        for id in ids {
            // Looked up again for each: an unsubscribed callback never runs.
            let cb = lock(&lc.subs)
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

/// The manager task: one per channel, started on the first connect request.
async fn run(lc: Arc<Lifecycle>) {
    let mut backoff = Backoff::new(lc.cfg.backoff);
    loop {
        match lc.state() {
            ConnectivityState::Shutdown => return,
            ConnectivityState::Idle => {
                let kicked = lc.kick.notified();
                tokio::pin!(kicked);
                kicked.as_mut().enable();
                let go = std::mem::take(&mut lock(&lc.inner).connect_requested);
                if go {
                    lc.set_state(ConnectivityState::Connecting);
                } else {
                    kicked.await;
                }
            }
            ConnectivityState::Connecting | ConnectivityState::TransientFailure => {
                lc.set_state(ConnectivityState::Connecting);
                lock(&lc.inner).connect_requested = false;
                let start = Instant::now();
                let (wait, limit) = backoff.next_attempt();
                let p = &lc.params;
                let attempt = tokio::time::timeout(
                    limit,
                    connect(&p.target, &p.transport, p.tls_name.as_ref()),
                );
                let result = tokio::select! {
                    r = attempt => r,
                    _ = lc.wait_for_change(ConnectivityState::Connecting) => {
                        // Only SHUTDOWN changes the state under us here.
                        return;
                    }
                };
                match result {
                    Ok(Ok(conn)) => {
                        backoff.reset();
                        install(&lc, conn);
                        continue;
                    }
                    Ok(Err(st)) => lock(&lc.inner).last_error = Some(st),
                    Err(_) => {
                        lock(&lc.inner).last_error = Some(Status::new(
                            Code::Unavailable,
                            format!(
                                "connection attempt timed out after {} ms",
                                limit.as_millis()
                            ),
                        ))
                    }
                }
                lc.set_state(ConnectivityState::TransientFailure);
                if !wait_out_backoff(&lc, start + wait).await {
                    return;
                }
                if idle_expired(&lc) {
                    lc.set_state(ConnectivityState::Idle);
                    backoff.reset();
                }
            }
            ConnectivityState::Ready => {
                let (dead, failed) = match lock(&lc.inner).conn.as_ref() {
                    Some(c) => (c.dead_signal(), c.clone_reason()),
                    None => {
                        lc.set_state(ConnectivityState::TransientFailure);
                        continue;
                    }
                };
                tokio::select! {
                    _ = dead.notified_or_dead() => {}
                    _ = idle_timer(&lc) => {
                        if let Some(c) = lock(&lc.inner).conn.take() {
                            c.abort("idle timeout");
                        }
                        log("closing the connection after the idle timeout");
                        lc.set_state(ConnectivityState::Idle);
                        continue;
                    }
                    _ = lc.wait_for_change(ConnectivityState::Ready) => return,
                }
                // Release our handle: streams still in flight on it (after a
                // GOAWAY) finish on their own.
                drop(lock(&lc.inner).conn.take());
                let reason = failed.get();
                if reason.too_many_pings {
                    let mut g = lock(&lc.inner);
                    if let Some(t) = g.keepalive_time {
                        g.keepalive_time = Some(t * 2);
                        log(&format!(
                            "server sent GOAWAY ENHANCE_YOUR_CALM (too_many_pings): keepalive time doubled to {} ms",
                            (t * 2).as_millis()
                        ));
                    }
                }
                if reason.graceful {
                    // GOAWAY is not a failure: READY → IDLE, and at once →
                    // CONNECTING when calls want a connection (the streams
                    // the server accepted finish on the old one).
                    lc.set_state(ConnectivityState::Idle);
                    if lc.active_calls() > 0 {
                        lock(&lc.inner).connect_requested = true;
                    }
                } else {
                    lock(&lc.inner).last_error =
                        Some(Status::new(Code::Unavailable, reason.message.clone()));
                    lc.set_state(ConnectivityState::TransientFailure);
                    // A connection that worked and then broke: a new backoff
                    // sequence starts with an immediate attempt.
                    backoff.reset();
                }
            }
        }
    }
}

/// Installs a new connection: READY, keepalive started.
fn install(lc: &Arc<Lifecycle>, mut conn: Connection) {
    if let Some(t) = lc.keepalive_time() {
        if let Some(pp) = conn.take_ping_pong() {
            let handle = conn.killer();
            let weak = Arc::downgrade(lc);
            if let Ok(h) = rt::handle() {
                h.spawn(keepalive(weak, pp, handle, t));
            }
        }
    }
    {
        let mut g = lock(&lc.inner);
        if lc.state() == ConnectivityState::Shutdown {
            conn.abort("channel closed");
            return;
        }
        g.conn = Some(conn);
        g.last_error = None;
    }
    lc.set_state(ConnectivityState::Ready);
}

/// Sleeps until `until`, or until a reset-backoff request; false on SHUTDOWN.
async fn wait_out_backoff(lc: &Arc<Lifecycle>, until: Instant) -> bool {
    loop {
        let kicked = lc.kick.notified();
        tokio::pin!(kicked);
        kicked.as_mut().enable();
        if lc.state() == ConnectivityState::Shutdown {
            return false;
        }
        if std::mem::take(&mut lock(&lc.inner).reset_backoff) {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return lc.state() != ConnectivityState::Shutdown,
            _ = kicked => {}
        }
    }
}

fn idle_expired(lc: &Lifecycle) -> bool {
    let Some(t) = lc.cfg.idle_timeout else {
        return false;
    };
    let g = lock(&lc.inner);
    g.active_calls == 0 && g.idle_since.elapsed() >= t
}

/// Completes when there have been no calls for the idle timeout.
async fn idle_timer(lc: &Arc<Lifecycle>) {
    let Some(timeout) = lc.cfg.idle_timeout else {
        return std::future::pending().await;
    };
    loop {
        let changed = lc.calls_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (calls, since) = {
            let g = lock(&lc.inner);
            (g.active_calls, g.idle_since)
        };
        if calls > 0 {
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

/// Pings the server every `period` while allowed; a ping unanswered within
/// the keepalive timeout closes the connection (its calls end UNAVAILABLE).
async fn keepalive(
    lc: std::sync::Weak<Lifecycle>,
    mut pp: h2::PingPong,
    killer: super::connection::Killer,
    period: Duration,
) {
    let mut pings_since_activity = 0u32;
    let mut last_activity = u64::MAX;
    loop {
        let Some(l) = lc.upgrade() else { return };
        let period = l.keepalive_time().unwrap_or(period);
        drop(l);
        tokio::time::sleep(period).await;
        let Some(l) = lc.upgrade() else { return };
        if killer.is_dead() {
            return;
        }
        let act = l.activity.load(Ordering::Relaxed);
        if act != last_activity {
            last_activity = act;
            pings_since_activity = 0;
        }
        if l.active_calls() == 0 && !l.cfg.keepalive_permit_without_calls {
            continue;
        }
        let max = l.cfg.max_pings_without_data;
        if max > 0 && pings_since_activity >= max {
            continue;
        }
        let timeout = l.cfg.keepalive_timeout;
        drop(l);
        match tokio::time::timeout(timeout, pp.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => pings_since_activity += 1,
            Ok(Err(_)) => return, // the connection is gone anyway
            Err(_) => {
                log("keepalive ping unanswered: closing the connection");
                killer.kill(&format!(
                    "keepalive ping not answered within {} ms",
                    timeout.as_millis()
                ));
                return;
            }
        }
    }
}
