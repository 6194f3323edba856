//! The channel object.

use crate::channel::lifecycle::{ConnectParams, Lifecycle, StateCallback};
use crate::channel::options::ChannelOptions;
use crate::channel::state::ConnectivityState;
use crate::channel::target::{self, Address};
use crate::credentials::{ChannelCredentials, Transport};
use crate::rt::Lend;
use crate::status::Status;
use crate::sync::lock;
use bytes::Bytes;
use h2::client::SendRequest;
use http::header::HeaderValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Why a channel could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// The target string is malformed or uses an unsupported form.
    InvalidTarget(String),
    /// The credentials cannot be used with this target.
    InvalidCredentials(String),
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelError::InvalidTarget(m) => write!(f, "invalid target: {m}"),
            ChannelError::InvalidCredentials(m) => write!(f, "invalid credentials: {m}"),
        }
    }
}

/// A call the channel can end when it is closed. The call module
/// implements it: the channel never depends on the call.
pub(crate) trait ActiveCall: Send + Sync {
    /// Ends the call with CANCELLED ("channel closed").
    fn cancel_for_close(&self);
}

/// A connection the picker chose for one attempt: a handle to open a
/// stream on it, and the connection for a blocked caller to drive.
pub(crate) struct Pick {
    pub(crate) send: SendRequest<Bytes>,
    pub(crate) conn: Arc<dyn Lend>,
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
    pub(crate) lc: Arc<Lifecycle>,
    closed: AtomicBool,
    calls: Mutex<HashMap<u64, Weak<dyn ActiveCall>>>,
    next_id: AtomicU64,
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
        let lc = Lifecycle::new(
            opts.lifecycle.clone(),
            ConnectParams {
                target: t.clone(),
                transport: creds.transport.clone(),
                tls_name: tls_name.clone(),
            },
        );
        Ok(Channel {
            inner: Arc::new(ChannelInner {
                opts,
                authority,
                user_agent,
                lc,
                creds,
                closed: AtomicBool::new(false),
                calls: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        })
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
    /// the connection. Idempotent.
    pub fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let calls: Vec<Arc<dyn ActiveCall>> = {
            let mut map = lock(&self.inner.calls);
            map.drain().filter_map(|(_, w)| w.upgrade()).collect()
        };
        for c in calls {
            c.cancel_for_close();
        }
        self.inner.lc.shutdown();
    }

    /// The connectivity state; with `try_to_connect`, IDLE starts connecting.
    pub fn state(&self, try_to_connect: bool) -> ConnectivityState {
        if try_to_connect && self.inner.lc.state() == ConnectivityState::Idle {
            self.inner.lc.request_connect();
        }
        self.inner.lc.state()
    }

    /// Waits until READY (connecting if needed); returns READY, or SHUTDOWN
    /// if the channel was closed first.
    pub async fn wait_for_ready(&self) -> ConnectivityState {
        self.inner.lc.wait_for(ConnectivityState::Ready).await
    }

    /// Waits until the state is not `from`; returns the new state.
    pub async fn wait_for_state_change(&self, from: ConnectivityState) -> ConnectivityState {
        self.inner.lc.wait_for_change(from).await
    }

    /// Calls `cb` with the current state, then on every change, in order,
    /// on a library thread. Returns an id for [`Channel::unsubscribe`].
    pub fn subscribe(&self, cb: StateCallback, try_to_connect: bool) -> u64 {
        self.inner.lc.subscribe(cb, try_to_connect)
    }

    /// Stops a subscription; once this returns its callback is not running
    /// (unless called from it) and never runs again. False if unknown.
    pub fn unsubscribe(&self, id: u64) -> bool {
        self.inner.lc.unsubscribe(id)
    }

    /// The keepalive ping period now in force (None = no pings); it doubles
    /// each time the server says the client pings too often.
    pub fn keepalive_time(&self) -> Option<std::time::Duration> {
        self.inner.lc.keepalive_time()
    }

    /// Ends a reconnect backoff early: the next attempt starts now.
    pub fn reset_connect_backoff(&self) {
        self.inner.lc.reset_backoff();
    }

    /// True after `close`.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Number of calls that have started and not yet ended.
    pub fn active_calls(&self) -> usize {
        lock(&self.inner.calls).len()
    }
}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        // The last reference is gone: stop the manager and the connection.
        self.lc.shutdown();
    }
}

fn is_local(a: &Address) -> bool {
    match a {
        Address::Ip(sa) => sa.ip().is_loopback(),
        Address::Dns { host, .. } => host == "localhost",
        Address::Unix(_) => true,
    }
}

impl ChannelInner {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Registers an active call; fails when the channel is closed.
    pub(crate) fn register(&self, call: Weak<dyn ActiveCall>) -> Result<u64, ()> {
        let mut map = lock(&self.calls);
        if self.is_closed() {
            return Err(());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        map.insert(id, call);
        self.lc.call_started();
        Ok(id)
    }

    pub(crate) fn unregister(&self, id: u64) {
        if lock(&self.calls).remove(&id).is_some() {
            self.lc.call_ended();
        }
    }

    /// A connection for one attempt, waiting as the connectivity state and
    /// `wait_for_ready` require (see `Lifecycle::connection_for_call`).
    pub(crate) async fn pick(&self, wait_for_ready: bool) -> Result<Pick, Status> {
        let (send, conn) = self.lc.connection_for_call(wait_for_ready).await?;
        Ok(Pick { send, conn })
    }

    /// Marks the current connection unusable so the next call reconnects.
    pub(crate) fn connection_failed(&self, reason: &str, graceful: bool) {
        self.lc.connection_failed(reason, graceful);
    }
}
