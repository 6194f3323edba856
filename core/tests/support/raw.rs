//! A raw HTTP/2 server (the h2 crate) for responses no real gRPC server
//! sends. Each request is read completely and handed, with its headers and
//! body, to the test's handler.

use bytes::{BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use http::{HeaderMap, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// One received request.
pub struct RawRequest {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct RawServer {
    pub addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl RawServer {
    /// Wraps a server a test started itself.
    pub fn from_parts(addr: SocketAddr, rt: tokio::runtime::Runtime) -> RawServer {
        RawServer { addr, _rt: rt }
    }
}

/// Frames a message with the 5-byte prefix.
pub fn frame(flag: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(flag);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// Splits a request body into (flag, payload) messages.
pub fn messages(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut v = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        v.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    v
}

pub fn grpc_headers(extra: &[(&str, &str)]) -> Response<()> {
    let mut r = Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(()).unwrap()
}

pub fn trailers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

/// Starts a server whose handler answers every request.
pub fn start_raw<F, Fut>(handler: F) -> RawServer
where
    F: Fn(RawRequest, SendResponse<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = l.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(sock).await else {
                    return;
                };
                while let Some(Ok((req, tx))) = conn.accept().await {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let (parts, mut body) = req.into_parts();
                        let mut buf = BytesMut::new();
                        while let Some(Ok(c)) = body.data().await {
                            let _ = body.flow_control().release_capacity(c.len());
                            buf.extend_from_slice(&c);
                        }
                        let r = RawRequest {
                            path: parts.uri.path().to_string(),
                            headers: parts.headers,
                            body: buf.freeze(),
                        };
                        handler(r, tx).await;
                    });
                }
            });
        }
    });
    RawServer { addr, _rt: rt }
}

/// Hand-written HTTP/2 for what the h2 crate will not send (GOAWAY debug
/// data, a chosen HPACK encoding): one frame of `kind` with `flags` on
/// `stream`.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads the client preface and sends an empty SETTINGS; false when the
/// client went away.
pub fn h2_accept_preface(s: &mut std::net::TcpStream) -> bool {
    use std::io::{Read, Write};
    let mut preface = [0u8; 24];
    s.read_exact(&mut preface).is_ok() && s.write_all(&h2_frame(4, 0, 0, &[])).is_ok()
}

/// Reads one frame: its 9-byte header and its payload.
pub fn h2_read_frame(s: &mut std::net::TcpStream) -> Option<([u8; 9], Vec<u8>)> {
    use std::io::Read;
    let mut h = [0u8; 9];
    s.read_exact(&mut h).ok()?;
    let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).ok()?;
    Some((h, p))
}
