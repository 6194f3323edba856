//! The channel object.

use super::calls::{ActiveCall, Calls};
use super::connection::h2_header_list_limit;
use super::connectivity::{Connectivity, StateCallback};
use super::control::Control;
use super::keepalive::Keepalive;
use super::options::ChannelOptions;
use super::policy::pick_first::PickFirst;
use super::policy::round_robin::RoundRobin;
use super::policy::{Helper, Pick, PickResult, Picker, Policy, PolicyContext};
use super::proxy;
use super::resolver::Resolver;
use super::service_config::{MethodConfig, ServiceConfig};
use super::state::ConnectivityState;
use super::subchannel::ConnectArgs;
use super::target::{self, Address};
use crate::credentials::{ChannelCredentials, Transport};
use crate::rt::{self, RuntimeError};
use crate::status::{Code, Status};
use crate::sync::lock;
use http::header::HeaderValue;
use std::sync::{Arc, Mutex, Weak};
use tokio::runtime::Handle;
use tokio::sync::watch;

/// Every channel alive, for [`close_all`] (shutdown). An entry goes when
/// its channel does.
static LIVE: Mutex<Vec<Weak<ChannelInner>>> = Mutex::new(Vec::new());

/// Closes every channel alive (as [`Channel::close`]) and forgets them:
/// the first step of shutdown, after which the application starts nothing.
pub(crate) fn close_all() {
    let live = std::mem::take(&mut *lock(&LIVE));
    for inner in live.iter().filter_map(Weak::upgrade) {
        Channel { inner }.close();
    }
}

/// Why a channel could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// The target string is malformed or uses an unsupported form.
    InvalidTarget(String),
    /// `grpc.service_config` is not a valid service config (the message
    /// gives the JSON path of the problem).
    InvalidServiceConfig(String),
    /// The credentials cannot be used with this target.
    InvalidCredentials(String),
    /// The HTTP proxy setting (`grpc.http_proxy` or the environment's) is
    /// malformed.
    InvalidProxy(String),
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelError::InvalidTarget(m) => write!(f, "invalid target: {m}"),
            ChannelError::InvalidServiceConfig(m) => write!(f, "invalid service config: {m}"),
            ChannelError::InvalidCredentials(m) => write!(f, "invalid credentials: {m}"),
            ChannelError::InvalidProxy(m) => write!(f, "invalid HTTP proxy setting: {m}"),
        }
    }
}

/// A gRPC channel. Cheap to clone (all clones are the same channel).
#[derive(Clone)]
pub struct Channel {
    pub(crate) inner: Arc<ChannelInner>,
}

pub(crate) struct ChannelInner {
    pub(crate) opts: ChannelOptions,
    pub(crate) authority: http::uri::Authority,
    pub(crate) user_agent: HeaderValue,
    pub(crate) creds: ChannelCredentials,
    /// The target as the application gave it.
    target: String,
    /// `grpc.service_config`, parsed.
    service_config: Option<ServiceConfig>,
    /// The service config's `retryThrottling`, when given and retries are on.
    retry_throttle: Option<crate::call::retry::Throttle>,
    /// Bytes all calls keep for retries (`grpc.retry_buffer_size`).
    pub(crate) retry_buffered: std::sync::atomic::AtomicUsize,
    /// Transparent and policy retries made by the channel's calls.
    pub(crate) retries: std::sync::atomic::AtomicU64,
    pub(crate) transparent_retries: std::sync::atomic::AtomicU64,
    /// The state the application sees (the policy's aggregate).
    connectivity: Arc<Connectivity>,
    /// Resolver and idle timer; it owns the load-balancing policy, which
    /// owns the subchannels.
    control: Arc<Control>,
    /// The policy's current picker.
    pickers: Arc<watch::Sender<Arc<dyn Picker>>>,
    calls: Arc<Calls>,
    keepalive: Arc<Keepalive>,
    /// Keepalive is on (then sends count as activity; its period only
    /// ever doubles, so this never changes).
    keepalive_on: bool,
    /// The runtime's handle, taken on first use: calls spawn with it
    /// without a global lock.
    rt: once_cell::sync::OnceCell<Handle>,
}

impl Channel {
    /// Creates an insecure channel. No connection is made until the first call.
    pub fn new(target: &str, opts: ChannelOptions) -> Result<Channel, ChannelError> {
        Channel::with_credentials(target, ChannelCredentials::insecure(), opts)
    }

    /// Creates a channel with credentials. No connection is made until the
    /// first call. Local credentials need a loopback or Unix socket target.
    pub fn with_credentials(
        target: &str,
        creds: ChannelCredentials,
        opts: ChannelOptions,
    ) -> Result<Channel, ChannelError> {
        let t = target::parse(target).map_err(ChannelError::InvalidTarget)?;
        if matches!(creds.transport, Transport::Local) && !t.addresses.iter().all(is_local) {
            return Err(ChannelError::InvalidCredentials(format!(
                "local credentials need a loopback address, \"localhost\" or a Unix socket; {target:?} is not"
            )));
        }
        let (t, proxy) = proxy::route(t, &opts, &|k| std::env::var(k).ok())
            .map_err(ChannelError::InvalidProxy)?;
        let authority_str = opts
            .default_authority
            .clone()
            .or_else(|| {
                let port = t
                    .authority
                    .rsplit_once(':')
                    .map(|(_, p)| p)
                    .unwrap_or("443");
                opts.ssl_target_name_override
                    .as_ref()
                    .map(|o| format!("{o}:{port}"))
            })
            .unwrap_or_else(|| t.authority.clone());
        let authority = authority_str.parse::<http::uri::Authority>().map_err(|e| {
            ChannelError::InvalidTarget(format!("{target:?}: authority {authority_str:?}: {e}"))
        })?;
        let mut ua = String::new();
        if let Some(p) = &opts.primary_user_agent {
            ua.push_str(p);
            ua.push(' ');
        }
        ua.push_str(&format!("grpc-c-rgrpc/{}", crate::VERSION));
        if let Some(s) = &opts.secondary_user_agent {
            ua.push(' ');
            ua.push_str(s);
        }
        let user_agent = HeaderValue::from_str(&ua)
            .map_err(|e| ChannelError::InvalidTarget(format!("user agent {ua:?}: {e}")))?;
        let tls_name = match creds.transport {
            Transport::Tls(_) => {
                let host = opts
                    .ssl_target_name_override
                    .clone()
                    .unwrap_or_else(|| authority.host().to_string());
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                Some(
                    rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                        ChannelError::InvalidTarget(format!(
                            "{host:?} is not a valid TLS server name: {e}"
                        ))
                    })?,
                )
            }
            _ => None,
        };
        let calls = Arc::new(Calls::new());
        let keepalive = Keepalive::new(&opts.connection);
        let keepalive_on = opts.connection.keepalive_time.is_some();
        let connectivity = Connectivity::new(t.authority.clone());
        let initial: Arc<dyn Picker> = Arc::new(NoPicker);
        let pickers = Arc::new(watch::channel(initial).0);
        let connect = Arc::new(ConnectArgs {
            transport: creds.transport.clone(),
            tls_name,
            keepalive: keepalive.clone(),
            calls: Arc::downgrade(&calls),
            max_header_list: h2_header_list_limit(opts.metadata_limits().hard),
            cfg: opts.connection.clone(),
            proxy,
        });
        let service_config = match &opts.service_config {
            Some(json) => Some(
                ServiceConfig::parse(json, super::policy::POLICIES)
                    .map_err(ChannelError::InvalidServiceConfig)?,
            ),
            None => None,
        };
        // The service config's policy, else grpc.lb_policy_name, else
        // pick_first.
        let lb = service_config.as_ref().and_then(|c| c.lb_policy());
        let policy_name = lb
            .map(|l| l.name.as_str())
            .or(opts.lb_policy_name.as_deref())
            .unwrap_or("pick_first");
        let shuffle = lb.is_some_and(|l| l.shuffle_address_list);
        let control = Control::new(
            Resolver::new(t),
            calls.clone(),
            opts.connection.idle_timeout,
            opts.min_time_between_resolutions,
            |helper| {
                let ctx = PolicyContext {
                    connect,
                    connectivity: connectivity.clone(),
                    pickers: pickers.clone(),
                    helper,
                };
                match policy_name {
                    "round_robin" => RoundRobin::new(ctx) as Arc<dyn Policy>,
                    _ => PickFirst::new(ctx, shuffle, calls.clone()) as Arc<dyn Policy>,
                }
            },
        );
        let retry_throttle = service_config
            .as_ref()
            .and_then(|c| c.retry_throttling())
            .filter(|_| opts.enable_retries)
            .map(crate::call::retry::Throttle::new);
        let channel = Channel {
            inner: Arc::new(ChannelInner {
                opts,
                authority,
                user_agent,
                creds,
                service_config,
                retry_throttle,
                retry_buffered: Default::default(),
                retries: Default::default(),
                transparent_retries: Default::default(),
                target: target.to_string(),
                connectivity,
                control,
                pickers,
                calls,
                keepalive,
                keepalive_on,
                rt: once_cell::sync::OnceCell::new(),
            }),
        };
        // After shutdown nothing would close it: leave it out (its calls
        // fail, the runtime being gone).
        if !rt::is_shut_down() {
            lock(&LIVE).push(Arc::downgrade(&channel.inner));
        }
        Ok(channel)
    }

    /// The options the channel was built with.
    pub fn options(&self) -> &ChannelOptions {
        &self.inner.opts
    }

    /// The `:authority` sent on every call.
    pub fn authority(&self) -> &str {
        self.inner.authority.as_str()
    }

    /// Ends every active call with CANCELLED, refuses new calls and closes
    /// the connections. Idempotent.
    pub fn close(&self) {
        let Some(calls) = self.inner.calls.close() else {
            return;
        };
        for c in calls {
            c.cancel_for_close();
        }
        self.inner.control.shutdown();
    }

    /// The connectivity state; with `try_to_connect`, IDLE starts connecting.
    pub fn state(&self, try_to_connect: bool) -> ConnectivityState {
        let s = self.inner.connectivity.state();
        if try_to_connect && s == ConnectivityState::Idle {
            self.inner.control.exit_idle();
        }
        self.inner.connectivity.state()
    }

    /// Waits until READY (connecting if needed); returns READY, or SHUTDOWN
    /// if the channel was closed first.
    pub async fn wait_for_ready(&self) -> ConnectivityState {
        self.inner.control.exit_idle();
        self.inner
            .connectivity
            .wait_for(ConnectivityState::Ready)
            .await
    }

    /// Waits until the state is not `from`; returns the new state.
    pub async fn wait_for_state_change(&self, from: ConnectivityState) -> ConnectivityState {
        self.inner.connectivity.wait_for_change(from).await
    }

    /// Calls `cb` with the current state, then on every change, in order,
    /// on a library thread. Returns an id for [`Channel::unsubscribe`].
    pub fn subscribe(&self, cb: StateCallback, try_to_connect: bool) -> u64 {
        let id = self.inner.connectivity.subscribe(cb);
        if try_to_connect && self.inner.connectivity.state() == ConnectivityState::Idle {
            self.inner.control.exit_idle();
        }
        id
    }

    /// Stops a subscription; once this returns its callback is not running
    /// (unless called from it) and never runs again. False if unknown.
    pub fn unsubscribe(&self, id: u64) -> bool {
        self.inner.connectivity.unsubscribe(id)
    }

    /// The keepalive ping period now in force (None = no pings); it doubles
    /// each time the server says the client pings too often.
    pub fn keepalive_time(&self) -> Option<std::time::Duration> {
        self.inner.keepalive.period()
    }

    /// Ends every reconnect backoff early: the next attempts start now (an
    /// IDLE channel starts connecting).
    pub fn reset_connect_backoff(&self) {
        self.inner.control.policy().reset_backoff();
        // An IDLE channel starts connecting.
        self.inner.control.exit_idle();
    }

    /// A snapshot of the channel in JSON (like channelz, in-process): the
    /// target, the state, the policy, the last resolution, each
    /// subchannel (address, state, last failure, connection attempts and
    /// failures, GOAWAYs, breaks), calls started / succeeded / failed /
    /// active, streams open, keepalive pings and timeouts. Keys are stable;
    /// new ones may be added.
    pub fn snapshot_json(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let inner = &self.inner;
        let res = inner.control.resolution();
        let policy = inner.control.policy();
        let subchannels: Vec<serde_json::Value> = policy
            .subchannels()
            .iter()
            .map(|sc| {
                let c = sc.counts();
                serde_json::json!({
                    "address": sc.peer(),
                    "state": sc.state().name(),
                    "last_failure": sc.last_error().map(|e| e.message().to_string()),
                    "connect_attempts": c.connect_attempts,
                    "connect_failures": c.connect_failures,
                    "goaways": c.goaways,
                    "breaks": c.breaks,
                })
            })
            .collect();
        let calls = &inner.calls;
        let ka = &inner.keepalive;
        serde_json::json!({
            "target": inner.target,
            "authority": inner.authority.as_str(),
            "state": inner.connectivity.state().name(),
            "policy": policy.name(),
            "resolution": {
                "count": res.count,
                "addresses": res.addresses,
                "error": res.error,
            },
            "subchannels": subchannels,
            "calls": {
                "started": calls.started.load(Relaxed),
                "succeeded": calls.succeeded.load(Relaxed),
                "failed": calls.failed.load(Relaxed),
                "active": calls.active(),
            },
            "streams_open": calls.streams.load(Relaxed),
            "retries": {
                "retries": inner.retries.load(Relaxed),
                "transparent": inner.transparent_retries.load(Relaxed),
                "throttle_tokens": inner.retry_throttle.as_ref().map(|t| t.milli_tokens() as f64 / 1000.0),
                "buffered_bytes": inner.retry_buffered.load(Relaxed),
            },
            "keepalive": {
                "time_ms": ka.period().map(|p| p.as_millis() as u64),
                "pings": ka.pings.load(Relaxed),
                "timeouts": ka.timeouts.load(Relaxed),
                "too_many_pings": ka.too_many_pings_seen.load(Relaxed),
            },
        })
        .to_string()
    }

    /// True after `close`.
    pub fn is_closed(&self) -> bool {
        self.inner.calls.is_closed()
    }

    /// Number of calls that have started and not yet ended.
    pub fn active_calls(&self) -> usize {
        self.inner.calls.active()
    }
}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        // The last reference is gone: stop the policy and its connections.
        self.control.shutdown();
        lock(&LIVE).retain(|w| w.strong_count() > 0);
    }
}

/// The picker before the policy has published one (never seen: the policy
/// publishes at once).
struct NoPicker;

impl Picker for NoPicker {
    fn pick(&self) -> PickResult {
        PickResult::Queue
    }
}

fn is_local(a: &Address) -> bool {
    match a {
        Address::Ip(sa) => sa.ip().is_loopback(),
        Address::Dns { host, .. } => host == "localhost",
        Address::Unix(_) | Address::UnixAbstract(_) => true,
    }
}

impl ChannelInner {
    pub(crate) fn is_closed(&self) -> bool {
        self.calls.is_closed()
    }

    /// The runtime's handle (kept by the channel: one atomic load per use,
    /// no global lock); an error once the library is shut down.
    pub(crate) fn rt_handle(&self) -> Result<&Handle, RuntimeError> {
        rt::ensure_started()?;
        self.rt.get_or_try_init(rt::handle)
    }

    /// The service config's settings for `method` (`/service/method`).
    pub(crate) fn method_config(&self, method: &str) -> Option<&Arc<MethodConfig>> {
        self.service_config.as_ref().and_then(|c| c.method(method))
    }

    /// The channel's retry throttle (`retryThrottling`), when configured.
    #[inline]
    pub(crate) fn retry_throttle(&self) -> Option<&crate::call::retry::Throttle> {
        self.retry_throttle.as_ref()
    }

    /// Registers an active call; fails when the channel is closed.
    pub(crate) fn register(&self, call: Weak<dyn ActiveCall>) -> Result<u64, ()> {
        self.calls.register(call)
    }

    pub(crate) fn unregister(&self, id: u64, ok: bool, had_stream: bool) {
        self.calls.unregister(id, ok, had_stream);
    }

    /// An attempt opened its stream.
    pub(crate) fn stream_opened(&self) {
        self.calls
            .streams
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A connection for one attempt from the policy's picker, waiting for
    /// the next picker while it says to queue (and, for wait-for-ready
    /// calls, while it fails). The caller bounds the wait with its deadline.
    pub(crate) async fn pick(&self, wait_for_ready: bool) -> Result<Pick, Status> {
        // Fast path: READY, no waiting, no subscription.
        let picker = self.pickers.borrow().clone();
        if let PickResult::Ready(p) = picker.pick() {
            return Ok(p);
        }
        let mut rx = self.pickers.subscribe();
        loop {
            let picker = rx.borrow_and_update().clone();
            match picker.pick() {
                PickResult::Ready(p) => return Ok(p),
                PickResult::Drop(st) => return Err(st),
                PickResult::Fail(st) if !wait_for_ready => return Err(st),
                PickResult::Fail(_) | PickResult::Queue => {}
            }
            if rx.changed().await.is_err() {
                return Err(Status::new(Code::Cancelled, "channel closed"));
            }
        }
    }

    /// An attempt sent headers or data: with keepalive on, its ping budget
    /// (`grpc.http2.max_pings_without_data`) starts again.
    pub(crate) fn note_sent(&self) {
        if self.keepalive_on {
            self.calls.note_activity();
        }
    }
}
