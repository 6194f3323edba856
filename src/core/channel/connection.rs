//! One HTTP/2 connection (h2 over TCP or a Unix socket), shared by every call
//! on a channel: many streams on one connection.

use crate::core::channel::options::ChannelOptions;
use crate::core::channel::target::{Address, Target};
use crate::core::status::{Code, Status};
use bytes::Bytes;
use h2::client::SendRequest;
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
pub(crate) async fn connect(target: &Target, _opts: &ChannelOptions) -> Result<Connection, Status> {
    let mut errors: Vec<String> = Vec::new();
    for addr in &target.addresses {
        match addr {
            Address::Ip(sa) => match tcp(*sa).await {
                Ok(s) => return handshake(s).await,
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
                        Ok(s) => return handshake(s).await,
                        Err(e) => errors.push(format!("{sa} ({host}): {e}")),
                    }
                }
            }
            Address::Unix(path) => match tokio::net::UnixStream::connect(path).await {
                Ok(s) => return handshake(s).await,
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
