//! One HTTP/2 connection (h2 over TCP or a Unix socket), shared by every call
//! on a channel: many streams on one connection.

use crate::core::channel::target::{Address, Target};
use crate::core::credentials::Transport;
use crate::core::status::{Code, Status};
use bytes::Bytes;
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// HTTP/2 receive window per stream (bytes).
pub const STREAM_WINDOW: u32 = 1 << 20;
/// HTTP/2 receive window for the whole connection (bytes).
pub const CONNECTION_WINDOW: u32 = 2 << 20;
/// Largest header list accepted from the server (bytes).
pub const MAX_HEADER_LIST: u32 = 16 << 10;

/// A live connection: a handle to open streams, and whether the connection
/// task is still running.
pub(crate) struct Connection {
    pub(crate) send: SendRequest<Bytes>,
    alive: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

impl Connection {
    /// True while the connection task runs.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Marks the connection as unusable for new streams.
    pub(crate) fn mark_dead(&self) {
        self.alive.store(false, Ordering::Release);
    }

    /// Ends the connection at once (channel close).
    pub(crate) fn abort(&self) {
        self.mark_dead();
        self.task.abort();
    }
}

/// Connects to the first address of `target` that accepts, and performs the
/// HTTP/2 handshake. Failures are UNAVAILABLE with the reason.
pub(crate) async fn connect(
    target: &Target,
    transport: &Transport,
    tls_name: Option<&ServerName<'static>>,
) -> Result<Connection, Status> {
    let mut errors: Vec<String> = Vec::new();
    for addr in &target.addresses {
        match addr {
            Address::Ip(sa) => match tcp(*sa).await {
                Ok(s) => return secure(s, transport, tls_name).await,
                Err(e) => errors.push(format!("{sa}: {e}")),
            },
            Address::Dns { host, port } => {
                let resolved = match tokio::net::lookup_host((host.as_str(), *port)).await {
                    Ok(r) => r.collect::<Vec<_>>(),
                    Err(e) => {
                        errors.push(format!("resolving {host}: {e}"));
                        continue;
                    }
                };
                if resolved.is_empty() {
                    errors.push(format!("resolving {host}: no addresses"));
                }
                for sa in resolved {
                    match tcp(sa).await {
                        Ok(s) => return secure(s, transport, tls_name).await,
                        Err(e) => errors.push(format!("{sa} ({host}): {e}")),
                    }
                }
            }
            Address::Unix(path) => match tokio::net::UnixStream::connect(path).await {
                Ok(s) => return secure(s, transport, tls_name).await,
                Err(e) => errors.push(format!("unix:{}: {e}", path.display())),
            },
        }
    }
    Err(Status::new(
        Code::Unavailable,
        format!("failed to connect to all addresses: {}", errors.join("; ")),
    ))
}

async fn tcp(sa: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpStream::connect(sa).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Runs TLS (when the transport says so) and then HTTP/2 over `io`.
async fn secure<T>(
    io: T,
    transport: &Transport,
    tls_name: Option<&ServerName<'static>>,
) -> Result<Connection, Status>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Transport::Tls(tls) = transport else {
        return handshake(io).await;
    };
    let name = tls_name
        .cloned()
        .ok_or_else(|| Status::new(Code::Unavailable, "TLS without a server name"))?;
    let shown = format!("{name:?}");
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
    handshake(stream).await
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
        E::AlertReceived(a @ (A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::HandshakeFailure)) => {
            format!("the server refused the handshake ({a:?}): it may require a client certificate, or not trust the one sent")
        }
        E::AlertReceived(A::NoApplicationProtocol) => {
            "the server does not offer HTTP/2 (ALPN \"h2\"), which gRPC requires".to_string()
        }
        other => format!("{other}"),
    };
    format!("TLS handshake failed: {what}")
}

async fn handshake<T>(io: T) -> Result<Connection, Status>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .enable_push(false)
        .handshake::<T, Bytes>(io)
        .await
        .map_err(|e| Status::new(Code::Unavailable, format!("HTTP/2 handshake failed: {e}")))?;
    let alive = Arc::new(AtomicBool::new(true));
    let flag = alive.clone();
    let rt = crate::core::rt::handle()
        .map_err(|e| Status::new(Code::Unavailable, format!("runtime: {e}")))?;
    let task = rt
        .spawn(async move {
            let _ = conn.await;
            flag.store(false, Ordering::Release);
        })
        .abort_handle();
    Ok(Connection { send, alive, task })
}
