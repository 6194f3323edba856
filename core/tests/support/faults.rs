//! Fault injection over real sockets: a TCP proxy that counts connections
//! and the client's HTTP/2 PINGs, and can freeze (stop forwarding, like a
//! server that stopped answering),
//! and listeners that accept and close, or accept and stay silent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Proxy {
    pub addr: SocketAddr,
    pub conns: Arc<AtomicUsize>,
    /// PING frames (not acks) the client sent, over every connection.
    pub pings: Arc<AtomicUsize>,
    frozen: Arc<AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    /// Forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let pings = Arc::new(AtomicUsize::new(0));
        let frozen = Arc::new(AtomicBool::new(false));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (c, f, p) = (conns.clone(), frozen.clone(), pings.clone());
        rt.spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (f, p) = (f.clone(), p.clone());
                tokio::spawn(async move {
                    let Ok(out) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = out.into_split();
                    tokio::spawn(pump(ri, wo, f.clone(), Some(PingCounter::new(p))));
                    pump(ro, wi, f, None).await;
                });
            }
        });
        Proxy {
            addr,
            conns,
            pings,
            frozen,
            _rt: rt,
        }
    }

    /// Stops (true) or resumes (false) forwarding in both directions.
    pub fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::SeqCst);
    }

    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    pub fn pings(&self) -> usize {
        self.pings.load(Ordering::SeqCst)
    }
}

/// Follows the HTTP/2 frames a client sends (after the 24-byte preface)
/// and counts PING frames that are not acks.
struct PingCounter {
    count: Arc<AtomicUsize>,
    /// Preface bytes still to skip.
    preface: usize,
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
}

impl PingCounter {
    fn new(count: Arc<AtomicUsize>) -> PingCounter {
        PingCounter {
            count,
            preface: 24,
            header: [0; 9],
            have: 0,
            skip: 0,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                n
            } else if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                n
            } else {
                let n = (9 - self.have).min(bytes.len());
                self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                if self.have == 9 {
                    let h = &self.header;
                    self.skip = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
                    if h[3] == 0x6 && h[4] & 0x1 == 0 {
                        self.count.fetch_add(1, Ordering::SeqCst);
                    }
                    self.have = 0;
                }
                n
            };
            bytes = &bytes[n..];
        }
    }
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    mut pings: Option<PingCounter>,
) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(p) = pings.as_mut() {
            p.scan(&buf[..n]);
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A listener that accepts and, per `silent`, closes at once or keeps the
/// socket open without a word. Counts accepted connections.
pub struct BadListener {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl BadListener {
    pub fn start(silent: bool) -> BadListener {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let a = accepts.clone();
        rt.spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                if silent {
                    held.push(s);
                }
            }
        });
        BadListener {
            addr,
            accepts,
            _rt: rt,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}
