//! One HTTP/2 connection over a dialled byte stream (TCP or a Unix socket,
//! optionally TLS): the TLS and HTTP/2 handshakes, the connection task, and
//! its end (GOAWAY, failure, abort). Many streams share one connection.

use super::driver::Driver;
use crate::credentials::Transport;
use crate::rt::Lend;
use crate::status::{Code, Status};
use bytes::Bytes;
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

/// HTTP/2 receive window per stream (bytes).
pub const STREAM_WINDOW: u32 = 1 << 20;
/// HTTP/2 receive window for the whole connection (bytes).
pub const CONNECTION_WINDOW: u32 = 2 << 20;
/// The largest frame the server may send by default
/// (SETTINGS_MAX_FRAME_SIZE; `grpc.http2.max_frame_size` changes it): 16 KiB,
/// HTTP/2's own default. Larger frames let a large message be read from
/// the socket straight into h2's buffer (see [`GoawayWatch`]'s reads), but h2
/// then allocates a buffer of a frame's size for nearly every frame it
/// reads, and glibc hands such blocks back to the kernel and faults them in
/// again whenever they meet the application's own blocks of similar size
/// (bench/README.md: at 256 KiB frames a 1 MiB unary call costs 8 % less
/// CPU, but a stream of 192-512 KiB messages 80 % more, with 20-60 page
/// faults per message).
pub(crate) const MAX_FRAME: u32 = 16 << 10;
/// The header list size h2 itself enforces for a channel whose hard
/// metadata limit is `hard`: four times it (at least 64 KiB), so that the
/// call sees and reports (RESOURCE_EXHAUSTED, naming the limit) a block
/// over the limit, while h2 still bounds what a hostile peer can make it
/// decode (an HPACK bomb) and refuses a CONTINUATION flood.
pub(crate) fn h2_header_list_limit(hard: usize) -> u32 {
    u32::try_from(hard.saturating_mul(4).max(64 << 10)).unwrap_or(u32::MAX)
}
/// Framing overhead of small unread DATA frames allowed before h2 closes
/// the connection (h2's default, half the connection window, ends fast
/// streams of tiny messages with ENHANCE_YOUR_CALM when the reader lags).
pub const DATA_FRAME_BUDGET: usize = 16 << 20;

/// Why a connection ended.
#[derive(Clone, Debug, Default)]
pub(crate) struct CloseReason {
    /// In words, for statuses and logs.
    pub(crate) message: String,
    /// The server closed it on purpose (GOAWAY NO_ERROR, clean EOF).
    pub(crate) graceful: bool,
    /// GOAWAY ENHANCE_YOUR_CALM with "too_many_pings".
    pub(crate) too_many_pings: bool,
}

struct Shared {
    alive: AtomicBool,
    dead: Notify,
    reason: Mutex<Option<CloseReason>>,
    task: OnceLock<tokio::task::AbortHandle>,
}

impl Shared {
    /// Records the end (the first reason wins) and wakes watchers.
    fn finish(&self, reason: CloseReason) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.alive.store(false, Ordering::Release);
        self.dead.notify_waiters();
    }
}

/// A live connection: a handle to open streams, and its end signal.
pub(crate) struct Connection {
    pub(crate) send: SendRequest<Bytes>,
    /// Lets a caller blocked on one of its calls drive it (`rt::Lend`).
    pub(crate) lend: Arc<dyn Lend>,
    shared: Arc<Shared>,
    ping_pong: Option<h2::PingPong>,
}

/// Ends a connection at once, from anywhere (keepalive, channel close).
#[derive(Clone)]
pub(crate) struct Killer(Arc<Shared>);

impl Killer {
    pub(crate) fn kill(&self, reason: &str) {
        self.0.finish(CloseReason {
            message: reason.to_string(),
            ..Default::default()
        });
        if let Some(t) = self.0.task.get() {
            t.abort();
        }
    }

    pub(crate) fn is_dead(&self) -> bool {
        !self.0.alive.load(Ordering::Acquire)
    }

    /// Stops new streams on the connection (streams in flight finish);
    /// `graceful`: the server asked for it (GOAWAY), not a failure. Its
    /// subchannel sees the end and reports it to the policy.
    pub(crate) fn mark_dead(&self, reason: &str, graceful: bool) {
        self.0.finish(CloseReason {
            message: reason.to_string(),
            graceful,
            ..Default::default()
        });
    }
}

/// Completes when the connection has ended or was marked unusable.
pub(crate) struct DeadSignal(Arc<Shared>);

impl DeadSignal {
    pub(crate) async fn notified_or_dead(&self) {
        loop {
            let n = self.0.dead.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if !self.0.alive.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }
}

/// Reads why a connection ended.
pub(crate) struct ReasonHandle(Arc<Shared>);

impl ReasonHandle {
    pub(crate) fn get(&self) -> CloseReason {
        self.0
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| CloseReason {
                message: "connection closed".into(),
                ..Default::default()
            })
    }
}

impl Connection {
    /// Stops new streams on this connection; streams in flight finish
    /// normally. `graceful`: the server asked for it (GOAWAY), as opposed
    /// to a failure.
    /// Ends the connection at once; its calls fail with UNAVAILABLE.
    pub(crate) fn abort(&self, reason: &str) {
        self.killer().kill(reason);
    }

    pub(crate) fn killer(&self) -> Killer {
        Killer(self.shared.clone())
    }

    pub(crate) fn dead_signal(&self) -> DeadSignal {
        DeadSignal(self.shared.clone())
    }

    pub(crate) fn clone_reason(&self) -> ReasonHandle {
        ReasonHandle(self.shared.clone())
    }

    /// The PING handle for keepalive (once).
    pub(crate) fn take_ping_pong(&mut self) -> Option<h2::PingPong> {
        self.ping_pong.take()
    }
}

/// Watches the server's HTTP/2 frames as they are read, to notice a
/// GOAWAY: h2 reports a connection closed after GOAWAY(NO_ERROR) and one
/// whose server died (plain EOF) alike, and only the first is graceful.
struct GoawayWatch<T> {
    io: T,
    seen: Arc<AtomicBool>,
    /// The connection, once made: a GOAWAY(NO_ERROR) stops new streams on
    /// it at once (as C-core does), not only when the server closes it, so
    /// no request goes to a server that is shutting down.
    drain: Arc<OnceLock<Arc<Shared>>>,
    /// The first 8 bytes of a GOAWAY's payload (last stream id, error
    /// code) while they are read.
    goaway: Option<([u8; 8], usize)>,
    header: [u8; 9],
    have: usize,
    skip: usize,
    /// Payload length of the frame whose header was seen last.
    frame: usize,
    /// Read-ahead: `ahead[ahead_pos..ahead_len]` are bytes read from the
    /// socket not yet given to h2 (the buffer is zeroed once, when first
    /// needed, and reused).
    ahead: Vec<u8>,
    ahead_pos: usize,
    ahead_len: usize,
    /// Reads served from `ahead` since the last budget unit.
    served: u32,
}

/// Reads served from the read-ahead buffer per unit of tokio's task budget.
const BUDGET_EVERY: u32 = 2;

/// Bytes read from the socket per system call when h2 asks for less.
const READ_AHEAD: usize = 64 << 10;

/// The `http` tracer's line for a frame header read from the server.
#[cold]
fn trace_frame(h: &[u8; 9], len: usize) {
    const KINDS: [&str; 10] = [
        "DATA",
        "HEADERS",
        "PRIORITY",
        "RST_STREAM",
        "SETTINGS",
        "PUSH_PROMISE",
        "PING",
        "GOAWAY",
        "WINDOW_UPDATE",
        "CONTINUATION",
    ];
    let kind = KINDS.get(h[3] as usize).copied().unwrap_or("UNKNOWN");
    let stream = u32::from_be_bytes([h[5] & 0x7f, h[6], h[7], h[8]]);
    crate::trace!(
        crate::log::Tracer::Http,
        crate::log::Level::Debug,
        "received {kind} frame: stream {stream}, flags 0x{:02x}, {len} bytes",
        h[4]
    );
}

impl<T> GoawayWatch<T> {
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                if let Some((buf, have)) = self.goaway.as_mut() {
                    let k = (8 - *have).min(n);
                    buf[*have..*have + k].copy_from_slice(&bytes[..k]);
                    *have += k;
                    if *have == 8 {
                        let code = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                        self.goaway = None;
                        if code == 0 {
                            if let Some(sh) = self.drain.get() {
                                sh.finish(CloseReason {
                                    message: "the server is closing the connection (GOAWAY)".into(),
                                    graceful: true,
                                    ..Default::default()
                                });
                            }
                        }
                    }
                }
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                let h = &self.header;
                self.skip = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
                self.frame = self.skip;
                if h[3] == 0x7 {
                    self.seen.store(true, Ordering::Release);
                    if self.skip >= 8 {
                        self.goaway = Some(([0; 8], 0));
                    }
                }
                if crate::log::on(crate::log::Tracer::Http) {
                    trace_frame(h, self.skip);
                }
                self.have = 0;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GoawayWatch<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        // h2 asks for about one frame at a time; a large message would cost
        // a system call per 16 KiB frame. Small requests are served from a
        // read-ahead buffer filled up to READ_AHEAD bytes per call.
        if this.ahead_pos < this.ahead_len {
            // Reads served from memory take no budget from tokio: every
            // BUDGET_EVERY of them takes one unit, so that a peer flooding
            // frames cannot keep the thread in one poll (its timers, the
            // calls' deadlines among them, would wait).
            this.served += 1;
            if this.served >= BUDGET_EVERY {
                let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
                coop.made_progress();
                this.served = 0;
            }
            let n = (this.ahead_len - this.ahead_pos).min(buf.remaining());
            buf.put_slice(&this.ahead[this.ahead_pos..this.ahead_pos + n]);
            this.ahead_pos += n;
            this.scan_filled(buf, before);
            return std::task::Poll::Ready(Ok(()));
        }
        // Straight into h2's buffer when it offers a read-ahead's worth of
        // room, or when the rest of a large frame is due: h2 has reserved
        // room for the whole frame once it saw its header, so the bytes land
        // where h2 keeps them instead of being copied from `ahead`.
        if buf.remaining() >= READ_AHEAD || (this.frame >= READ_AHEAD && this.skip > 0) {
            let r = std::pin::Pin::new(&mut this.io).poll_read(cx, buf);
            if let std::task::Poll::Ready(Ok(())) = r {
                this.scan_filled(buf, before);
            }
            return r;
        }
        this.ahead_pos = 0;
        this.ahead_len = 0;
        if this.ahead.len() < READ_AHEAD {
            this.ahead.resize(READ_AHEAD, 0);
        }
        let mut rb = tokio::io::ReadBuf::new(&mut this.ahead[..READ_AHEAD]);
        match std::pin::Pin::new(&mut this.io).poll_read(cx, &mut rb) {
            std::task::Poll::Ready(Ok(())) => {
                let got = rb.filled().len();
                this.ahead_len = got;
                let n = got.min(buf.remaining());
                buf.put_slice(&this.ahead[..n]);
                this.ahead_pos = n;
                this.scan_filled(buf, before);
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T> GoawayWatch<T> {
    /// Scans what the last read added to `buf`.
    fn scan_filled(&mut self, buf: &tokio::io::ReadBuf<'_>, before: usize) {
        self.scan(&buf.filled()[before..]);
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GoawayWatch<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn classify(r: Result<(), h2::Error>, goaway_seen: bool) -> CloseReason {
    match r {
        Ok(()) if goaway_seen => CloseReason {
            message: "the server closed the connection (GOAWAY)".into(),
            graceful: true,
            too_many_pings: false,
        },
        Ok(()) => CloseReason {
            message: "connection lost: the server closed it without GOAWAY".into(),
            graceful: false,
            too_many_pings: false,
        },
        Err(e) => {
            let text = e.to_string();
            let calm = e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
            CloseReason {
                graceful: e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR),
                too_many_pings: e.is_go_away() && calm && text.contains("too_many_pings"),
                message: if e.is_go_away() {
                    format!("the server closed the connection (GOAWAY): {text}")
                } else {
                    format!("connection broken: {text}")
                },
            }
        }
    }
}

/// A byte stream a connection runs over: TCP, a Unix socket, or TLS over
/// either. One boxed type, so that the HTTP/2 and TLS code is compiled once
/// rather than once per stream type (smaller code, fewer pages touched).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub(crate) type BoxedIo = Box<dyn Io>;

/// The HTTP/2 settings a channel's connections announce beyond the
/// windows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct H2Settings {
    /// SETTINGS_MAX_HEADER_LIST_SIZE (see [`h2_header_list_limit`]).
    pub(crate) max_header_list: u32,
    /// SETTINGS_MAX_FRAME_SIZE (default [`MAX_FRAME`]).
    pub(crate) max_frame: u32,
}

/// Runs TLS (when the transport says so) and then HTTP/2 over `io`.
pub(crate) async fn secure(
    io: BoxedIo,
    transport: &Transport,
    tls_name: Option<&ServerName<'static>>,
    h2s: H2Settings,
) -> Result<Connection, Status> {
    let Transport::Tls(tls) = transport else {
        return handshake(io, None, h2s).await;
    };
    let name = tls_name
        .cloned()
        .ok_or_else(|| Status::new(Code::Unavailable, "TLS without a server name"))?;
    let shown = name.to_str().into_owned();
    let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(name, io)
        .await
        .map_err(|e| {
            Status::new(
                Code::Unavailable,
                tls_error_message(&e, &shown, &tls.roots_source),
            )
        })?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(Status::new(
            Code::Unavailable,
            "TLS handshake succeeded but the server does not offer HTTP/2 (ALPN \"h2\"), which gRPC requires",
        ));
    }
    handshake(Box::new(stream), Some(&tls.roots_source), h2s).await
}

/// Why the server did not answer the first PING. Over TLS 1.3 a server
/// refuses a client certificate only after the client's side of the
/// handshake, so that refusal shows up here.
fn first_answer_error(e: &h2::Error, tls_roots: Option<&str>) -> String {
    if let (Some(io), Some(roots)) = (e.get_io(), tls_roots) {
        if io.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
            return tls_error_message(io, "the server", roots);
        }
        return format!(
            "TLS handshake failed: the server closed the connection during the handshake; it may require a client certificate, or not trust the one sent ({e})"
        );
    }
    format!("HTTP/2 handshake failed: the server did not answer: {e}")
}

/// Says which TLS check failed, in words.
pub(crate) fn tls_error_message(e: &std::io::Error, name: &str, roots: &str) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return format!("TLS handshake failed: {e}");
    };
    let what = match tls {
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired".to_string()
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet".to_string()
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "hostname mismatch: the server's certificate is not valid for {name} (grpc.ssl_target_name_override sets the name to check)"
        ),
        E::InvalidCertificate(C::UnknownIssuer) => format!(
            "the server's certificate is signed by an unknown authority (not trusted by {roots})"
        ),
        E::InvalidCertificate(c) => format!("bad server certificate: {c:?}"),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            "the server did not answer with TLS (is it a plaintext server?)".to_string()
        }
        E::AlertReceived(A::CertificateRequired) => {
            "the server requires a client certificate (mutual TLS) and none was sent".to_string()
        }
        E::AlertReceived(a @ (A::BadCertificate | A::UnknownCA | A::CertificateUnknown)) => {
            format!("the server does not trust the client certificate ({a:?})")
        }
        E::AlertReceived(a @ A::HandshakeFailure) => {
            format!("the server refused the handshake ({a:?}): it may require a client certificate, or not trust the one sent")
        }
        E::AlertReceived(A::NoApplicationProtocol) => {
            "the server does not offer HTTP/2 (ALPN \"h2\"), which gRPC requires".to_string()
        }
        other => format!("{other}"),
    };
    format!("TLS handshake failed: {what}")
}

/// `tls_roots`: Some when the stream is TLS (for messages about it).
async fn handshake(
    io: BoxedIo,
    tls_roots: Option<&str>,
    h2s: H2Settings,
) -> Result<Connection, Status> {
    let goaway_seen = Arc::new(AtomicBool::new(false));
    let drain = Arc::new(OnceLock::new());
    let watched = GoawayWatch {
        io,
        seen: goaway_seen.clone(),
        drain: drain.clone(),
        goaway: None,
        header: [0; 9],
        have: 0,
        skip: 0,
        frame: 0,
        ahead: Vec::new(),
        ahead_pos: 0,
        ahead_len: 0,
        served: 0,
    };
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(h2s.max_frame)
        .max_header_list_size(h2s.max_header_list)
        .data_frame_budget(DATA_FRAME_BUDGET)
        .enable_push(false)
        .handshake::<GoawayWatch<BoxedIo>, Bytes>(watched)
        .await
        .map_err(|e| Status::new(Code::Unavailable, format!("HTTP/2 handshake failed: {e}")))?;
    let mut conn = conn;
    let mut ping_pong = conn.ping_pong();
    let shared = Arc::new(Shared {
        alive: AtomicBool::new(true),
        dead: Notify::new(),
        reason: Mutex::new(None),
        task: OnceLock::new(),
    });
    let _ = drain.set(shared.clone());
    let sh = shared.clone();
    let rt =
        crate::rt::handle().map_err(|e| Status::new(Code::Unavailable, format!("runtime: {e}")))?;
    let driver = Driver::new(conn);
    let run = driver.clone().run();
    let task = rt.spawn(async move {
        let r = run.await;
        sh.finish(classify(r, goaway_seen.load(Ordering::Acquire)));
    });
    let _ = shared.task.set(task.abort_handle());
    // Established means the server answered: its SETTINGS come before the
    // PONG, so a listener that never speaks HTTP/2 fails the attempt here
    // (within the connect timeout) instead of looking READY.
    if let Some(pp) = ping_pong.as_mut() {
        if let Err(e) = pp.ping(h2::Ping::opaque()).await {
            task.abort();
            return Err(Status::new(
                Code::Unavailable,
                first_answer_error(&e, tls_roots),
            ));
        }
    }
    Ok(Connection {
        send,
        lend: driver,
        shared,
        ping_pong,
    })
}
