//! The channel object.

use crate::core::call::CallShared;
use crate::core::channel::connection::{connect, Connection};
use crate::core::channel::options::ChannelOptions;
use crate::core::channel::target::{self, Address, Target};
use crate::core::credentials::{ChannelCredentials, Transport};
use crate::core::status::{Code, Status};
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

/// A gRPC channel. Cheap to clone (all clones are the same channel).
#[derive(Clone)]
pub struct Channel {
    pub(crate) inner: Arc<ChannelInner>,
}

pub(crate) struct ChannelInner {
    pub(crate) target: Target,
    pub(crate) opts: ChannelOptions,
    pub(crate) authority: http::uri::Authority,
    pub(crate) user_agent: HeaderValue,
    pub(crate) creds: ChannelCredentials,
    /// The name the server's certificate must match (TLS only).
    pub(crate) tls_name: Option<rustls::pki_types::ServerName<'static>>,
    current: Mutex<Option<Connection>>,
    connect_lock: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    calls: Mutex<HashMap<u64, Weak<CallShared>>>,
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
        ua.push_str(&format!("grpc-c-rgrpc/{}", crate::core::VERSION));
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
        Ok(Channel {
            inner: Arc::new(ChannelInner {
                target: t,
                opts,
                authority,
                user_agent,
                creds,
                tls_name,
                current: Mutex::new(None),
                connect_lock: tokio::sync::Mutex::new(()),
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
        let calls: Vec<Arc<CallShared>> = {
            let mut map = lock(&self.inner.calls);
            map.drain().filter_map(|(_, w)| w.upgrade()).collect()
        };
        for c in calls {
            c.terminate_local(Status::new(Code::Cancelled, "channel closed"));
        }
        if let Some(conn) = lock(&self.inner.current).take() {
            conn.abort();
        }
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

fn is_local(a: &Address) -> bool {
    match a {
        Address::Ip(sa) => sa.ip().is_loopback(),
        Address::Dns { host, .. } => host == "localhost",
        Address::Unix(_) => true,
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ChannelInner {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Registers an active call; fails when the channel is closed.
    pub(crate) fn register(&self, call: &Arc<CallShared>) -> Result<u64, ()> {
        let mut map = lock(&self.calls);
        if self.is_closed() {
            return Err(());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        map.insert(id, Arc::downgrade(call));
        Ok(id)
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.calls).remove(&id);
    }

    /// A handle on the shared connection, connecting if there is none.
    pub(crate) async fn connection(&self) -> Result<SendRequest<Bytes>, Status> {
        if let Some(c) = lock(&self.current).as_ref() {
            if c.is_alive() {
                return Ok(c.send.clone());
            }
        }
        let _g = self.connect_lock.lock().await;
        if self.is_closed() {
            return Err(Status::new(Code::Cancelled, "channel closed"));
        }
        if let Some(c) = lock(&self.current).as_ref() {
            if c.is_alive() {
                return Ok(c.send.clone());
            }
        }
        let conn = connect(&self.target, &self.creds.transport, self.tls_name.as_ref()).await?;
        let send = conn.send.clone();
        let mut cur = lock(&self.current);
        if self.is_closed() {
            conn.abort();
            return Err(Status::new(Code::Cancelled, "channel closed"));
        }
        *cur = Some(conn);
        Ok(send)
    }

    /// Marks the current connection unusable so the next call reconnects.
    pub(crate) fn connection_failed(&self) {
        if let Some(c) = lock(&self.current).as_ref() {
            c.mark_dead();
        }
    }
}
