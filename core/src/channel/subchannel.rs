//! A subchannel: one endpoint and the connection to it — dial (TCP or a
//! Unix socket, MSG_NOSIGNAL writes), TLS, the HTTP/2 handshake, keepalive
//! on the connection it makes, through an HTTP CONNECT proxy when the
//! channel has one — with its own connectivity state.
//! Load-balancing policies own subchannels and choose among them.

use super::calls::Calls;
use super::connection::{secure, BoxedIo, Connection};
use super::keepalive::Keepalive;
use super::nosigpipe::NoSigPipe;
use super::proxy::ProxyRoute;
use super::resolver::Endpoint;
use super::state::ConnectivityState;
use crate::credentials::Transport;
use crate::status::Status;
use rustls::pki_types::ServerName;
use std::sync::{Arc, Weak};
use tokio::sync::watch;

/// What every subchannel of a channel connects with.
pub(crate) struct ConnectArgs {
    pub(crate) transport: Transport,
    pub(crate) tls_name: Option<ServerName<'static>>,
    pub(crate) keepalive: Arc<Keepalive>,
    pub(crate) calls: Weak<Calls>,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (see `connection::h2_header_list_limit`).
    pub(crate) max_header_list: u32,
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

/// One endpoint and its connection state.
pub(crate) struct Subchannel {
    endpoint: Endpoint,
    args: Arc<ConnectArgs>,
    state: watch::Sender<ConnectivityState>,
}

impl Subchannel {
    pub(crate) fn new(endpoint: Endpoint, args: Arc<ConnectArgs>) -> Subchannel {
        Subchannel {
            endpoint,
            args,
            state: watch::channel(ConnectivityState::Idle).0,
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The subchannel's own state: IDLE, CONNECTING, READY (it made a
    /// connection that is still in use), TRANSIENT_FAILURE (the last
    /// attempt failed).
    pub(crate) fn state(&self) -> ConnectivityState {
        *self.state.borrow()
    }

    /// Dials, runs TLS when the channel is secure, and the HTTP/2
    /// handshake; starts keepalive on the new connection.
    pub(crate) async fn connect(&self) -> Result<Connection, ConnectFailure> {
        self.state.send_replace(ConnectivityState::Connecting);
        let r = self.dial_and_handshake().await;
        self.state.send_replace(match r {
            Ok(_) => ConnectivityState::Ready,
            Err(_) => ConnectivityState::TransientFailure,
        });
        let mut conn = r?;
        let a = &self.args;
        a.keepalive
            .start(conn.take_ping_pong(), conn.killer(), a.calls.clone());
        Ok(conn)
    }

    /// The connection it made is no longer used: READY → IDLE.
    pub(crate) fn disconnected(&self) {
        self.state.send_replace(ConnectivityState::Idle);
    }

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
        };
        if let (Some(p), Endpoint::Tcp { addr, .. }) = (&a.proxy, &self.endpoint) {
            p.tunnel(&mut io, *addr)
                .await
                .map_err(ConnectFailure::Handshake)?;
        }
        secure(io, &a.transport, a.tls_name.as_ref(), a.max_header_list)
            .await
            .map_err(ConnectFailure::Handshake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::options::ConnectionConfig;
    use crate::rt;

    fn args(calls: &Arc<Calls>) -> Arc<ConnectArgs> {
        Arc::new(ConnectArgs {
            transport: Transport::Insecure,
            tls_name: None,
            keepalive: Keepalive::new(&ConnectionConfig::default()),
            calls: Arc::downgrade(calls),
            max_header_list: 64 << 10,
            proxy: None,
        })
    }

    #[test]
    fn states_follow_the_connection() {
        let calls = Arc::new(Calls::new());
        // A refused port: TRANSIENT_FAILURE, and the endpoint named.
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
        );
        assert_eq!(refused.state(), ConnectivityState::Idle);
        match rt::block_on(refused.connect()).unwrap() {
            Err(ConnectFailure::Dial(m)) => assert!(m.starts_with(&format!("127.0.0.1:{port}: "))),
            Err(ConnectFailure::Handshake(s)) => panic!("{s:?}"),
            Ok(_) => panic!("connected to a closed port"),
        }
        assert_eq!(refused.state(), ConnectivityState::TransientFailure);
        // A real gRPC server: READY, then IDLE once the connection is let go.
        let server = rgrpc_tonic_interop::TestServer::start();
        let sc = Subchannel::new(
            Endpoint::Tcp {
                addr: server.addr(),
                host: None,
            },
            args(&calls),
        );
        let conn = rt::block_on(sc.connect()).unwrap().expect("connected");
        assert_eq!(sc.state(), ConnectivityState::Ready);
        conn.abort("test done");
        sc.disconnected();
        assert_eq!(sc.state(), ConnectivityState::Idle);
    }
}
