//! A subchannel: one endpoint and the connection to it — dial (TCP or a
//! Unix socket, MSG_NOSIGNAL writes), TLS, the HTTP/2 handshake, keepalive
//! on the connection it makes, through an HTTP CONNECT proxy when the
//! channel has one — with its own connectivity state and its
//! own reconnect backoff (`doc/connection-backoff.md` in grpc/grpc).
//!
//! One task per subchannel walks its states, as C-core's subchannel does:
//!
//! * IDLE → CONNECTING when its policy asks ([`Subchannel::connect`]);
//! * CONNECTING → READY, or → TRANSIENT_FAILURE when the attempt fails or
//!   takes longer than its limit;
//! * TRANSIENT_FAILURE → IDLE once its backoff has passed (or at once on
//!   [`Subchannel::reset_backoff`]): the policy decides whether to connect
//!   again;
//! * READY → IDLE when the connection ends (GOAWAY, breakage, keepalive),
//!   with the reason; the backoff starts over after a READY.
//!
//! Every change is reported, in order, from that task to the policy's
//! [`Watcher`]. Load-balancing policies own subchannels and choose among them.

use super::backoff::Backoff;
use super::calls::Calls;
use super::connection::{secure, BoxedIo, CloseReason, Connection, H2Settings, Killer};
use super::keepalive::Keepalive;
use super::nosigpipe::NoSigPipe;
use super::options::ConnectionConfig;
use super::policy::Pick;
use super::proxy::ProxyRoute;
use super::resolver::Endpoint;
use super::state::ConnectivityState;
use crate::credentials::Transport;
use crate::log::{Level, Tracer};
use crate::rt::{self, Lend};
use crate::status::{Code, Status};
use crate::sync::lock;
use crate::trace;
use bytes::Bytes;
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What every subchannel of a channel connects with.
pub(crate) struct ConnectArgs {
    pub(crate) transport: Transport,
    pub(crate) tls_name: Option<ServerName<'static>>,
    pub(crate) keepalive: Arc<Keepalive>,
    pub(crate) calls: Weak<Calls>,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (see `connection::h2_header_list_limit`).
    pub(crate) max_header_list: u32,
    /// Backoff and connect timeout settings.
    pub(crate) cfg: ConnectionConfig,
    /// The HTTP CONNECT proxy TCP endpoints go through, if any.
    pub(crate) proxy: Option<Arc<ProxyRoute>>,
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// The endpoint could not be reached (refused, unreachable, ...): the
    /// endpoint and the system's error, in words.
    Dial(String),
    /// Reached, but TLS or HTTP/2 failed: the status says how.
    Handshake(Status),
}

impl ConnectFailure {
    /// The failure as a status (a dial failure names the endpoint).
    fn into_status(self) -> Status {
        match self {
            ConnectFailure::Dial(m) => Status::new(Code::Unavailable, m),
            // Not prefixed: `policy::all_failed` names the endpoint when
            // there are several.
            ConnectFailure::Handshake(st) => st,
        }
    }
}

/// A change of a subchannel's state, as its policy is told.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub(crate) state: ConnectivityState,
    /// TRANSIENT_FAILURE: why the attempt failed.
    pub(crate) error: Option<Status>,
    /// IDLE after READY: why the connection ended.
    pub(crate) closed: Option<CloseReason>,
}

/// Told of every change of the subchannels it owns, in order per
/// subchannel, on the subchannel's task (so it must not block).
pub(crate) trait Watcher: Send + Sync {
    fn changed(&self, sc: &Arc<Subchannel>, change: Change);
}

/// The connection of a READY subchannel, as pickers hand it out.
#[derive(Clone)]
pub(crate) struct ReadyConn {
    send: SendRequest<Bytes>,
    lend: Arc<dyn Lend>,
    killer: Killer,
    peer: Arc<str>,
}

impl ReadyConn {
    /// The pick for one attempt; None when the connection has just ended
    /// (its subchannel is about to report it).
    pub(crate) fn pick(&self) -> Option<Pick> {
        if self.killer.is_dead() {
            return None;
        }
        Some(Pick {
            send: self.send.clone(),
            conn: self.lend.clone(),
            killer: self.killer.clone(),
            peer: self.peer.clone(),
        })
    }
}

struct Inner {
    state: ConnectivityState,
    /// Set by `connect`, taken by the task.
    want_connect: bool,
    want_reset: bool,
    shutdown: bool,
    task_started: bool,
    ready: Option<ReadyConn>,
    /// The live connection (to abort on shutdown).
    conn_killer: Option<Killer>,
    last_error: Option<Status>,
    /// For the channel's snapshot.
    counts: Counts,
}

/// What happened to one subchannel, for the channel's snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub(crate) connect_attempts: u64,
    pub(crate) connect_failures: u64,
    /// Connections the server ended with GOAWAY (or a clean close).
    pub(crate) goaways: u64,
    /// Connections that broke (reset, keepalive timeout, I/O error).
    pub(crate) breaks: u64,
}

/// One endpoint and its connection state.
pub(crate) struct Subchannel {
    endpoint: Endpoint,
    /// The endpoint as C-core writes peers, followed by a NUL (so a call
    /// keeps it without a copy): `ipv4:127.0.0.1:50051`,
    /// `ipv6:[::1]:50051`, `unix:/path`.
    peer: Arc<str>,
    args: Arc<ConnectArgs>,
    watcher: Weak<dyn Watcher>,
    inner: Mutex<Inner>,
    kick: Notify,
}

impl Subchannel {
    pub(crate) fn new(
        endpoint: Endpoint,
        args: Arc<ConnectArgs>,
        watcher: Weak<dyn Watcher>,
    ) -> Arc<Subchannel> {
        Arc::new(Subchannel {
            peer: format!("{}\0", endpoint.peer()).into(),
            endpoint,
            args,
            watcher,
            inner: Mutex::new(Inner {
                state: ConnectivityState::Idle,
                want_connect: false,
                want_reset: false,
                shutdown: false,
                task_started: false,
                ready: None,
                conn_killer: None,
                last_error: None,
                counts: Counts::default(),
            }),
            kick: Notify::new(),
        })
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The state last reported.
    pub(crate) fn state(&self) -> ConnectivityState {
        lock(&self.inner).state
    }

    /// The connection, while READY.
    pub(crate) fn ready(&self) -> Option<ReadyConn> {
        lock(&self.inner).ready.clone()
    }

    /// What happened to it so far.
    pub(crate) fn counts(&self) -> Counts {
        lock(&self.inner).counts
    }

    /// The address as C-core writes peers (`ipv4:127.0.0.1:50051`).
    pub(crate) fn peer(&self) -> &str {
        &self.peer[..self.peer.len() - 1]
    }

    /// Why the last attempt failed.
    pub(crate) fn last_error(&self) -> Option<Status> {
        lock(&self.inner).last_error.clone()
    }

    /// Asks for a connection: from IDLE it starts connecting (other states
    /// keep the request until IDLE comes).
    pub(crate) fn connect(self: &Arc<Self>) {
        let start = {
            let mut g = lock(&self.inner);
            if g.shutdown {
                return;
            }
            g.want_connect = true;
            !std::mem::replace(&mut g.task_started, true)
        };
        if start {
            if let Ok(h) = rt::handle() {
                h.spawn(run(self.clone()));
            }
        }
        self.kick.notify_one();
    }

    /// Ends the backoff wait now (when in TRANSIENT_FAILURE).
    pub(crate) fn reset_backoff(&self) {
        lock(&self.inner).want_reset = true;
        self.kick.notify_one();
    }

    /// Closes the connection and stops; no more changes are reported.
    pub(crate) fn shutdown(&self, reason: &str) {
        self.stop(reason, true);
    }

    /// Stops handing out the connection and stops, without cutting the
    /// streams in flight on it: they finish, then the connection closes
    /// (an address the resolver no longer lists). No more changes are
    /// reported.
    pub(crate) fn retire(&self, reason: &str) {
        self.stop(reason, false);
    }

    /// Stops the subchannel; `cut`: end its connection at once, else let
    /// the streams in flight finish.
    fn stop(&self, reason: &str, cut: bool) {
        let killer = {
            let mut g = lock(&self.inner);
            g.shutdown = true;
            g.ready = None;
            g.conn_killer.take()
        };
        match killer {
            Some(k) if cut => k.kill(reason),
            Some(k) => k.mark_dead(reason, true),
            None => {}
        }
        self.kick.notify_one();
    }

    /// True after `shutdown` or `retire`.
    pub(crate) fn is_shut_down(&self) -> bool {
        lock(&self.inner).shutdown
    }

    /// Records and reports a change (from the task only).
    fn report(self: &Arc<Self>, change: Change) {
        {
            let mut g = lock(&self.inner);
            if g.shutdown {
                return;
            }
            g.state = change.state;
            if change.error.is_some() {
                g.last_error = change.error.clone();
            }
            match (&change.state, &change.closed) {
                (ConnectivityState::Connecting, _) => g.counts.connect_attempts += 1,
                (ConnectivityState::TransientFailure, _) => g.counts.connect_failures += 1,
                (ConnectivityState::Idle, Some(c)) if c.graceful => g.counts.goaways += 1,
                (ConnectivityState::Idle, Some(c)) => {
                    g.counts.breaks += 1;
                    g.last_error = Some(Status::new(Code::Unavailable, c.message.clone()));
                }
                _ => {}
            }
        }
        if let Some(w) = self.watcher.upgrade() {
            w.changed(self, change);
        }
    }

    /// Waits for a kick (connect, reset, shutdown); `until` bounds it.
    async fn wait_kick(&self, until: Option<Instant>) {
        match until {
            Some(t) => {
                let _ = tokio::time::timeout_at(t, self.kick.notified()).await;
            }
            None => self.kick.notified().await,
        }
    }

    /// Dials, runs TLS when the channel is secure, and the HTTP/2
    /// handshake.
    async fn dial_and_handshake(&self) -> Result<Connection, ConnectFailure> {
        let a = &self.args;
        let dial_failed =
            |e: std::io::Error| ConnectFailure::Dial(format!("{}: {e}", self.endpoint));
        let mut io: BoxedIo = match &self.endpoint {
            Endpoint::Tcp { addr, .. } => {
                let s = match &a.proxy {
                    Some(p) => p.dial(*addr).await.map_err(ConnectFailure::Dial)?,
                    None => tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(dial_failed)?,
                };
                s.set_nodelay(true).map_err(dial_failed)?;
                Box::new(NoSigPipe(s))
            }
            Endpoint::Unix(path) => Box::new(NoSigPipe(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(dial_failed)?,
            )),
            Endpoint::UnixAbstract(name) => {
                Box::new(NoSigPipe(connect_abstract(name).map_err(dial_failed)?))
            }
        };
        if let (Some(p), Endpoint::Tcp { addr, .. }) = (&a.proxy, &self.endpoint) {
            p.tunnel(&mut io, *addr)
                .await
                .map_err(ConnectFailure::Handshake)?;
        }
        let h2s = H2Settings {
            max_header_list: a.max_header_list,
            max_frame: a.cfg.max_frame_size,
        };
        secure(io, &a.transport, a.tls_name.as_ref(), h2s)
            .await
            .map_err(ConnectFailure::Handshake)
    }

    /// One connection attempt, bounded by `limit`.
    async fn attempt(&self, limit: std::time::Duration) -> Result<Connection, Status> {
        match tokio::time::timeout(limit, self.dial_and_handshake()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(f)) => Err(f.into_status()),
            Err(_) => Err(Status::new(
                Code::Unavailable,
                format!(
                    "{}: connection attempt timed out after {} ms",
                    self.endpoint,
                    limit.as_millis()
                ),
            )),
        }
    }
}

/// Connects to a Linux abstract Unix socket (a local connect completes
/// at once or fails; it does not wait for the server to accept).
fn connect_abstract(name: &[u8]) -> std::io::Result<tokio::net::UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    let s = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    s.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(s)
}

/// The subchannel's task: started by the first `connect`, ends on shutdown.
async fn run(sc: Arc<Subchannel>) {
    let mut backoff = Backoff::new(sc.args.cfg.backoff);
    loop {
        // IDLE: wait for a connect request.
        loop {
            let kicked = sc.kick.notified();
            tokio::pin!(kicked);
            kicked.as_mut().enable();
            {
                let mut g = lock(&sc.inner);
                if g.shutdown {
                    return;
                }
                if std::mem::take(&mut g.want_connect) {
                    break;
                }
            }
            kicked.await;
        }
        trace!(
            Tracer::Subchannel,
            Level::Debug,
            "subchannel {} is CONNECTING",
            sc.endpoint
        );
        sc.report(Change {
            state: ConnectivityState::Connecting,
            error: None,
            closed: None,
        });
        let start = Instant::now();
        let (wait, limit) = backoff.next_attempt();
        let result = tokio::select! {
            r = sc.attempt(limit) => r,
            _ = async {
                while !sc.is_shut_down() {
                    sc.wait_kick(None).await;
                }
            } => return,
        };
        match result {
            Ok(mut conn) => {
                backoff.reset();
                let a = &sc.args;
                a.keepalive
                    .start(conn.take_ping_pong(), conn.killer(), a.calls.clone());
                let ready = ReadyConn {
                    send: conn.send.clone(),
                    lend: conn.lend.clone(),
                    killer: conn.killer(),
                    peer: sc.peer.clone(),
                };
                {
                    let mut g = lock(&sc.inner);
                    if g.shutdown {
                        drop(g);
                        conn.abort("channel closed");
                        return;
                    }
                    g.ready = Some(ready);
                    g.conn_killer = Some(conn.killer());
                    g.want_connect = false;
                }
                trace!(
                    Tracer::Subchannel,
                    Level::Info,
                    "subchannel {} is READY",
                    sc.endpoint
                );
                sc.report(Change {
                    state: ConnectivityState::Ready,
                    error: None,
                    closed: None,
                });
                conn.dead_signal().notified_or_dead().await;
                let reason = conn.clone_reason().get();
                {
                    let mut g = lock(&sc.inner);
                    g.ready = None;
                    g.conn_killer = None;
                    if g.shutdown {
                        return;
                    }
                }
                if reason.too_many_pings {
                    sc.args.keepalive.too_many_pings();
                }
                trace!(
                    Tracer::Subchannel,
                    Level::Info,
                    "subchannel {}: connection ended: {}",
                    sc.endpoint,
                    reason.message
                );
                // Streams still in flight on it (after a GOAWAY) finish on
                // their own: `conn` only drops our handle.
                drop(conn);
                sc.report(Change {
                    state: ConnectivityState::Idle,
                    error: None,
                    closed: Some(reason),
                });
            }
            Err(st) => {
                trace!(
                    Tracer::Subchannel,
                    Level::Info,
                    "subchannel {}: connection attempt failed: {}",
                    sc.endpoint,
                    st.message()
                );
                sc.report(Change {
                    state: ConnectivityState::TransientFailure,
                    error: Some(st),
                    closed: None,
                });
                // Backoff: until start + wait, or a reset, or shutdown.
                let until = start + wait;
                loop {
                    let kicked = sc.kick.notified();
                    tokio::pin!(kicked);
                    kicked.as_mut().enable();
                    {
                        let mut g = lock(&sc.inner);
                        if g.shutdown {
                            return;
                        }
                        if std::mem::take(&mut g.want_reset) {
                            break;
                        }
                    }
                    if Instant::now() >= until {
                        break;
                    }
                    let _ = tokio::time::timeout_at(until, kicked).await;
                }
                lock(&sc.inner).want_connect = false;
                sc.report(Change {
                    state: ConnectivityState::Idle,
                    error: None,
                    closed: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct Log(Mutex<mpsc::Sender<ConnectivityState>>);

    impl Watcher for Log {
        fn changed(&self, _sc: &Arc<Subchannel>, change: Change) {
            let _ = lock(&self.0).send(change.state);
        }
    }

    fn args(calls: &Arc<Calls>) -> Arc<ConnectArgs> {
        let mut cfg = ConnectionConfig::default();
        cfg.backoff.initial = std::time::Duration::from_millis(100);
        Arc::new(ConnectArgs {
            transport: Transport::Insecure,
            tls_name: None,
            keepalive: Keepalive::new(&ConnectionConfig::default()),
            calls: Arc::downgrade(calls),
            max_header_list: 64 << 10,
            cfg,
            proxy: None,
        })
    }

    fn next(rx: &mpsc::Receiver<ConnectivityState>) -> ConnectivityState {
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("a state change")
    }

    #[test]
    fn states_follow_the_connection() {
        let calls = Arc::new(Calls::new());
        let (tx, rx) = mpsc::channel();
        let log: Arc<dyn Watcher> = Arc::new(Log(Mutex::new(tx)));
        // A refused port: TRANSIENT_FAILURE naming the endpoint, then IDLE
        // after the backoff.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = Subchannel::new(
            Endpoint::Tcp {
                addr: ([127, 0, 0, 1], port).into(),
                host: None,
            },
            args(&calls),
            Arc::downgrade(&log),
        );
        assert_eq!(refused.state(), ConnectivityState::Idle);
        refused.connect();
        assert_eq!(next(&rx), ConnectivityState::Connecting);
        assert_eq!(next(&rx), ConnectivityState::TransientFailure);
        let err = refused.last_error().expect("an error");
        assert!(
            err.message().starts_with(&format!("127.0.0.1:{port}: ")),
            "{err}"
        );
        assert_eq!(next(&rx), ConnectivityState::Idle);
        refused.shutdown("test done");
        // A real gRPC server: READY with a connection to pick, then IDLE
        // once the server goes away.
        let server = rgrpc_tonic_interop::TestServer::start();
        let sc = Subchannel::new(
            Endpoint::Tcp {
                addr: server.addr(),
                host: None,
            },
            args(&calls),
            Arc::downgrade(&log),
        );
        sc.connect();
        assert_eq!(next(&rx), ConnectivityState::Connecting);
        assert_eq!(next(&rx), ConnectivityState::Ready);
        let pick = sc.ready().and_then(|r| r.pick()).expect("a pick");
        assert_eq!(&*pick.peer, format!("ipv4:{}\0", server.addr()));
        server.kill();
        assert_eq!(next(&rx), ConnectivityState::Idle);
        assert!(sc.ready().is_none());
        sc.shutdown("test done");
    }
}
