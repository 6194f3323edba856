//! A tonic implementation of the official gRPC interop `grpc.testing.TestService`
//! server, used as a test peer for rgrpc.
//!
//! Use [`TestServer::start`] in Rust tests (the server runs on its own
//! thread with its own tokio runtime, so it works from sync and async tests
//! alike), or the `tonic-interop-server` binary from other test harnesses.
//!
//! Besides the interop behaviour (see
//! `doc/interop-test-descriptions.md` in grpc/grpc), every method honours
//! these request metadata keys:
//!
//! * `x-grpc-test-echo-initial*`: copied to the response initial metadata.
//! * `x-grpc-test-echo-trailing*`: copied to the response trailing metadata
//!   (also on error statuses; in the headers of a trailers-only response).
//! * `x-rgrpc-echo-request-headers: 1`: reflects request headers into the
//!   response initial metadata as `x-rgrpc-req-te`, `x-rgrpc-req-user-agent`,
//!   `x-rgrpc-req-content-type`, `x-rgrpc-req-grpc-timeout`,
//!   `x-rgrpc-req-authority`, `x-rgrpc-req-path` and
//!   `x-rgrpc-req-header-order`.
//!   With it, `grpc-encoding` and `grpc-accept-encoding` are reflected as
//!   `x-rgrpc-req-grpc-encoding` and `x-rgrpc-req-grpc-accept-encoding`.
//!   Also with it: `authorization`, when present, as
//!   `x-rgrpc-req-authorization`, and on a mutual-TLS connection the client
//!   certificate's subject CN as `x-rgrpc-req-peer-cn`.
//! * `x-rgrpc-echo-all: 1`: every request metadata item that is not
//!   reserved (a key starting with `grpc-`, or `user-agent`, `te`,
//!   `content-type`) is copied to the response initial metadata as
//!   `x-echo-<key>` (`-bin` values as they came).
//! * `x-rgrpc-echo-compression: 1`: adds `x-rgrpc-req-compressed-flags` to
//!   the trailing metadata: `0`/`1` per received request message (its
//!   compressed flag), comma-separated.
//! * `x-rgrpc-sleep-ms: N`: waits N ms before handling the call at all
//!   (before any response headers).
//!
//! Compression follows the interop spec: gzip and deflate requests are
//! accepted, `expect_compressed` is checked both ways per message, and
//! `response_compressed` (UnaryCall) / `ResponseParameters.compressed`
//! (StreamingOutputCall) gzip exactly the selected response messages when
//! the client accepts gzip. See `compression.rs` and the README.
//!
//! A request's `grpc-timeout` is enforced by the server: if it passes before
//! the response headers, the reply is a trailers-only DEADLINE_EXCEEDED; if
//! it passes mid-stream, the handler is dropped and the trailers carry
//! DEADLINE_EXCEEDED (grpc-message "Deadline Exceeded", percent-encoded by
//! tonic as `Deadline%20Exceeded`).
//!
//! Connections are served by hyper's HTTP/2 server directly (not tonic's
//! `transport::Server`), with tonic's router and generated service inside.
//! With [`ServerOptions::tls`] they are TLS (rustls, `ring` provider) with
//! ALPN `h2`, optionally requiring a client certificate.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::sync::oneshot;
use tonic::service::Routes;
use tower::{Layer, ServiceExt};

mod compression;
mod layer;
pub mod retry;
mod service;
mod tls;

pub use tls::TlsServerOptions;

/// Code generated from `grpc/testing/test.proto` (messages, tonic server and
/// client for every service in it).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("grpc.testing");
}

/// Options for [`TestServer::start_with`] and the `serve_*` functions.
#[derive(Debug, Default, Clone)]
pub struct ServerOptions {
    /// Listen on this Unix domain socket instead of TCP. A stale file at the
    /// path is removed first, and the socket file is removed on kill.
    pub unix_path: Option<PathBuf>,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS advertised by the server
    /// (None: no limit advertised, as tonic does).
    pub max_concurrent_streams: Option<u32>,
    /// Largest request message the server accepts (tonic's default is 4 MiB);
    /// larger ones fail with OUT_OF_RANGE (tonic's code for this).
    pub max_decoding_message_size: Option<usize>,
    /// TCP port to bind on 127.0.0.1 (SO_REUSEADDR is set, so a port of a
    /// killed server can be bound again at once). Default 0: any free port.
    pub port: Option<u16>,
    /// The loopback address to bind (default 127.0.0.1; any of 127/8, or
    /// ::1, to run several servers as distinct hosts).
    pub ip: Option<IpAddr>,
    /// Serve TLS instead of plaintext HTTP/2 (also on a Unix socket).
    /// [`TestServer::target`] stays `127.0.0.1:PORT`: clients connect by
    /// address and check a name of the certificate (e.g. with an override).
    pub tls: Option<TlsServerOptions>,
}

/// A running interop server. Dropping it kills it.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    unix_path: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    requests: layer::RequestCounter,
}

impl TestServer {
    /// Start on 127.0.0.1:0 on its own thread with its own multi-thread tokio
    /// runtime (2 workers); returns once listening. Panics if it cannot.
    pub fn start() -> TestServer {
        Self::start_with(ServerOptions::default())
    }

    /// Same as [`TestServer::start`], with options. Panics if the server
    /// cannot start (e.g. the requested port is in use).
    pub fn start_with(opts: ServerOptions) -> TestServer {
        match Self::try_start_with(opts) {
            Ok(server) => server,
            Err(e) => panic!("tonic interop server failed to start: {e}"),
        }
    }

    /// Same as [`TestServer::start_with`], returning the error (e.g. the port
    /// is still taken) instead of panicking.
    pub fn try_start_with(opts: ServerOptions) -> io::Result<TestServer> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let unix_path = opts.unix_path.clone();
        let requests = layer::RequestCounter::default();
        let counter = requests.clone();
        let thread = std::thread::Builder::new()
            .name("tonic-interop-server".into())
            .spawn(move || server_thread(opts, ready_tx, stop_rx, counter))?;
        match ready_rx.recv() {
            Ok(Ok(addr)) => Ok(TestServer {
                addr,
                unix_path,
                stop: Some(stop_tx),
                thread: Some(thread),
                requests,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("tonic interop server thread died"))
            }
        }
    }

    /// Listening address (TCP), e.g. 127.0.0.1:41234; 0.0.0.0:0 when
    /// listening on a Unix socket.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "127.0.0.1:PORT" (or "unix:PATH" when listening on a Unix socket).
    pub fn target(&self) -> String {
        match &self.unix_path {
            Some(path) => format!("unix:{}", path.display()),
            None => self.addr.to_string(),
        }
    }

    /// The Unix socket path, when listening on one.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
    }

    /// The number of requests (calls) this server has received.
    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// Abruptly stop: abort the server and drop every open connection at
    /// once (no GOAWAY; peers see the connection close mid-stream). Blocks
    /// until the listener and all connections are closed.
    pub fn kill(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn server_thread(
    opts: ServerOptions,
    ready: std::sync::mpsc::Sender<io::Result<SocketAddr>>,
    stop: oneshot::Receiver<()>,
    requests: layer::RequestCounter,
) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tonic-interop-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };

    let unix_path = opts.unix_path.clone();
    let server = match Server::new(opts.clone()) {
        Ok(mut server) => {
            server.requests = requests;
            server
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let bound = rt.block_on(async {
        match &opts.unix_path {
            Some(path) => bind_unix(path).map(|l| (Listener::Unix(l), unspecified())),
            None => {
                let ip = opts.ip.unwrap_or(Ipv4Addr::LOCALHOST.into());
                let addr = SocketAddr::new(ip, opts.port.unwrap_or(0));
                let l = bind_tcp(addr)?;
                let addr = l.local_addr()?;
                Ok((Listener::Tcp(l), addr))
            }
        }
    });
    let (listener, addr) = match bound {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };

    rt.spawn(async move {
        match listener {
            Listener::Tcp(l) => server.serve_tcp(l).await,
            Listener::Unix(l) => server.serve_unix(l).await,
        }
    });
    let _ = ready.send(Ok(addr));

    // Wait for kill (or for the TestServer to vanish without sending).
    rt.block_on(async {
        let _ = stop.await;
    });
    // Drops every task: the accept loop with its listener, each connection
    // task with its socket, and the handlers. Returns once the workers are
    // gone, so all of those are closed by then.
    rt.shutdown_timeout(Duration::from_secs(5));
    if let Some(path) = unix_path {
        let _ = std::fs::remove_file(path);
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

fn unspecified() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}

/// Binds a TCP listener with SO_REUSEADDR (so a restarted server can take the
/// port of a killed one). Must be called within a tokio runtime.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Binds a Unix socket listener, removing a stale socket file first. Must be
/// called within a tokio runtime.
pub fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

type HttpService = layer::InteropHttpService<Routes>;

/// tonic's default `max_decoding_message_size` (4 MiB).
const TONIC_DEFAULT_MAX_DECODING_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

fn http_service(opts: &ServerOptions) -> HttpService {
    let mut svc = pb::test_service_server::TestServiceServer::new(service::InteropTestService);
    if let Some(limit) = opts.max_decoding_message_size {
        svc = svc.max_decoding_message_size(limit);
    }
    let max_message_size = opts
        .max_decoding_message_size
        .unwrap_or(TONIC_DEFAULT_MAX_DECODING_MESSAGE_SIZE);
    layer::InteropLayer::new(max_message_size).layer(Routes::new(svc).prepare())
}

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection of one server shares.
#[derive(Clone)]
struct Server {
    svc: HttpService,
    opts: ServerOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    requests: layer::RequestCounter,
}

impl Server {
    fn new(opts: ServerOptions) -> io::Result<Server> {
        let tls = opts.tls.as_ref().map(tls::acceptor).transpose()?;
        Ok(Server {
            svc: http_service(&opts),
            opts,
            tls,
            requests: layer::RequestCounter::default(),
        })
    }

    /// Serves one connection (HTTP/2 only, like tonic's server) on its own
    /// task, after the TLS handshake when the server uses TLS.
    fn spawn_connection<IO>(&self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let svc = self.svc.clone();
        let max_concurrent_streams = self.opts.max_concurrent_streams;
        let tls = self.tls.clone();
        let requests = self.requests.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_http(io, svc, max_concurrent_streams, None, requests).await,
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        TLS_HANDSHAKE_TIMEOUT,
                        acceptor.accept(io),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        // A failed handshake (the client did not trust us,
                        // sent no or a bad certificate, spoke plaintext...):
                        // rustls has sent its alert; drop the connection.
                        Ok(Err(_)) | Err(_) => return,
                    };
                    let peer = tls::PeerIdentity::of(stream.get_ref().1);
                    serve_http(stream, svc, max_concurrent_streams, peer, requests).await
                }
            }
        });
    }

    async fn serve_tcp(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    self.spawn_connection(stream);
                }
                Err(e) => accept_failed(e).await,
            }
        }
    }

    async fn serve_unix(self, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => self.spawn_connection(stream),
                Err(e) => accept_failed(e).await,
            }
        }
    }
}

/// Serves HTTP/2 on an established connection until it ends. `peer` (the
/// client's certificate identity) is added to every request's extensions.
async fn serve_http<IO>(
    io: IO,
    svc: HttpService,
    max_concurrent_streams: Option<u32>,
    peer: Option<tls::PeerIdentity>,
    requests: layer::RequestCounter,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_concurrent_streams);
    let hyper_svc = hyper::service::service_fn(move |mut req: http::Request<_>| {
        requests.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(peer) = &peer {
            req.extensions_mut().insert(peer.clone());
        }
        svc.clone().oneshot(req)
    });
    // Errors here are the peer going away or misbehaving: nothing to do.
    let _ = builder.serve_connection(TokioIo::new(io), hyper_svc).await;
}

/// Backs off after a failed accept (e.g. out of file descriptors).
async fn accept_failed(e: io::Error) {
    eprintln!("tonic interop server: accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Serves the interop TestService on an already bound TCP listener until the
/// future is dropped; dropping it closes the listener but not the accepted
/// connections, which run on tasks of their own (shut the runtime down to
/// drop those). `opts.unix_path` and `opts.port` are ignored. Fails at once
/// (`InvalidInput`) when `opts.tls` holds unusable certificates or keys.
pub async fn serve_tcp(listener: TcpListener, opts: ServerOptions) -> io::Result<()> {
    Server::new(opts)?.serve_tcp(listener).await;
    Ok(())
}

/// Serves the interop TestService on an already bound Unix socket listener,
/// like [`serve_tcp`].
pub async fn serve_unix(listener: UnixListener, opts: ServerOptions) -> io::Result<()> {
    Server::new(opts)?.serve_unix(listener).await;
    Ok(())
}
