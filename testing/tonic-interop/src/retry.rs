//! A `grpc.testing.TestService` server for retry tests ([`RetryServer`]):
//! it fails, delays or pushes back chosen attempts of a call and records
//! every attempt it sees, so a test can count retries on the server.
//!
//! The request metadata says what to do (the same convention as the grpcio
//! test server, `cbindings-tests/interop_server.py`):
//!
//! * `x-retry-key: K` names the logical call; attempts are counted per K
//!   (1-based, in arrival order). Without it the server answers normally.
//! * `x-fail: N:CODE`: the first N attempts of K fail with status CODE and
//!   no message, before any response headers (a Trailers-Only response).
//! * `x-pushback: A:V[,A:V...]`: the failure of attempt A also carries the
//!   trailing metadata `grpc-retry-pushback-ms: V` (V as given).
//! * `x-delay: A:MS[,...]`: attempt A waits MS milliseconds before it
//!   answers (recorded as cancelled if the client cancels meanwhile).
//! * `x-fail-after-headers: N:CODE` (the streaming-response methods): the
//!   first N attempts send the response headers, then fail with CODE (the
//!   call is committed: a client must not retry it).
//!
//! The streaming-request methods read every request message before they
//! decide, so a test can check that a retry replayed them all.
//!
//! The server stops gracefully ([`RetryServer::stop`]: GOAWAY, in-flight
//! calls finish) or at once ([`RetryServer::kill`]), and can be started again
//! on the same address: a rolling restart.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::service::Routes;
use tonic::{Code, Request, Response, Status, Streaming};
use tower::ServiceExt;

use crate::pb::test_service_server::{TestService, TestServiceServer};
use crate::pb::{
    Empty, Payload, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
    StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};

/// One attempt as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// The attempt's number for its key (1-based, arrival order).
    pub n: u32,
    /// The request's `grpc-previous-rpc-attempts`, when present.
    pub previous: Option<String>,
    /// When it arrived.
    pub at: Instant,
    /// `UnaryCall`, `StreamingInputCall`, ...
    pub method: &'static str,
    /// Request messages read (all of them, for the streaming-request
    /// methods) and their payload bytes.
    pub requests: u32,
    pub request_bytes: usize,
    /// The client cancelled it before it was answered.
    pub cancelled: bool,
    /// Which server answered (its `RetryServer` address).
    pub server: SocketAddr,
}

type Records = Arc<Mutex<HashMap<String, Vec<AttemptRecord>>>>;

#[derive(Clone)]
struct RetryService {
    records: Records,
    served: Arc<std::sync::atomic::AtomicU64>,
    me: SocketAddr,
}

/// `A:V,A:V` → the V of attempt `n`.
fn per_attempt<'a>(md: &'a MetadataMap, key: &str, n: u32) -> Option<&'a str> {
    md.get(key)?.to_str().ok()?.split(',').find_map(|item| {
        let (a, v) = item.trim().split_once(':')?;
        (a.trim().parse::<u32>().ok()? == n).then_some(v.trim())
    })
}

/// `N:CODE` → the code when attempt `n` is among the first N.
fn failing(md: &MetadataMap, key: &str, n: u32) -> Option<Code> {
    let (count, code) = md.get(key)?.to_str().ok()?.split_once(':')?;
    let count: u32 = count.trim().parse().ok()?;
    let code: i32 = code.trim().parse().ok()?;
    (n <= count).then(|| Code::from_i32(code))
}

/// Marks the record cancelled if the handler is dropped before it answers.
struct Answering {
    records: Records,
    key: String,
    index: usize,
    done: bool,
}

impl Drop for Answering {
    fn drop(&mut self) {
        if !self.done {
            if let Some(r) = self
                .records
                .lock()
                .unwrap()
                .get_mut(&self.key)
                .and_then(|v| v.get_mut(self.index))
            {
                r.cancelled = true;
            }
        }
    }
}

/// What the server does with one attempt.
struct Script {
    answering: Option<Answering>,
    n: u32,
    md: MetadataMap,
}

impl RetryService {
    fn begin(&self, md: &MetadataMap, method: &'static str, requests: u32, bytes: usize) -> Script {
        self.served
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let Some(key) = md.get("x-retry-key").and_then(|v| v.to_str().ok()) else {
            return Script {
                answering: None,
                n: 0,
                md: md.clone(),
            };
        };
        let mut all = self.records.lock().unwrap();
        let list = all.entry(key.to_string()).or_default();
        let n = list.len() as u32 + 1;
        list.push(AttemptRecord {
            n,
            previous: md
                .get("grpc-previous-rpc-attempts")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            at: Instant::now(),
            method,
            requests,
            request_bytes: bytes,
            cancelled: false,
            server: self.me,
        });
        Script {
            answering: Some(Answering {
                records: self.records.clone(),
                key: key.to_string(),
                index: list.len() - 1,
                done: false,
            }),
            n,
            md: md.clone(),
        }
    }
}

impl Script {
    /// Waits as `x-delay` says, then fails as `x-fail` says (with
    /// `x-pushback`'s trailer).
    async fn before_headers(&mut self) -> Result<(), Status> {
        if self.answering.is_none() {
            return Ok(());
        }
        if let Some(ms) = per_attempt(&self.md, "x-delay", self.n).and_then(|v| v.parse().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let result = match failing(&self.md, "x-fail", self.n) {
            Some(code) => {
                let mut st = Status::new(code, format!("attempt {} fails", self.n));
                if let Some(v) = per_attempt(&self.md, "x-pushback", self.n) {
                    if let Ok(v) = v.parse() {
                        st.metadata_mut().insert("grpc-retry-pushback-ms", v);
                    }
                }
                Err(st)
            }
            None => Ok(()),
        };
        self.done();
        result
    }

    fn after_headers(&self) -> Option<Status> {
        self.answering.as_ref()?;
        failing(&self.md, "x-fail-after-headers", self.n)
            .map(|c| Status::new(c, format!("attempt {} fails after its headers", self.n)))
    }

    fn done(&mut self) {
        if let Some(a) = self.answering.as_mut() {
            a.done = true;
        }
    }
}

fn payload(n: i32) -> Option<Payload> {
    Some(Payload {
        r#type: 0,
        body: vec![0u8; n.max(0) as usize],
    })
}

type OutputStream = ReceiverStream<Result<StreamingOutputCallResponse, Status>>;

/// Sends `responses`, then `fail` if any, on a new response stream.
fn output(responses: Vec<i32>, fail: Option<Status>) -> Response<OutputStream> {
    let (tx, rx) = mpsc::channel(responses.len() + 1);
    for size in responses {
        let _ = tx.try_send(Ok(StreamingOutputCallResponse {
            payload: payload(size),
        }));
    }
    if let Some(st) = fail {
        let _ = tx.try_send(Err(st));
    }
    Response::new(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl TestService for RetryService {
    async fn empty_call(&self, _r: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        r: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let bytes = r.get_ref().payload.as_ref().map_or(0, |p| p.body.len());
        let mut s = self.begin(r.metadata(), "UnaryCall", 1, bytes);
        s.before_headers().await?;
        Ok(Response::new(SimpleResponse {
            payload: payload(r.get_ref().response_size),
            ..Default::default()
        }))
    }

    async fn cacheable_unary_call(
        &self,
        r: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        self.unary_call(r).await
    }

    type StreamingOutputCallStream = OutputStream;

    async fn streaming_output_call(
        &self,
        r: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<OutputStream>, Status> {
        let mut s = self.begin(r.metadata(), "StreamingOutputCall", 1, 0);
        s.before_headers().await?;
        let sizes = r
            .get_ref()
            .response_parameters
            .iter()
            .map(|p| p.size)
            .collect();
        Ok(output(sizes, s.after_headers()))
    }

    async fn streaming_input_call(
        &self,
        r: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let md = r.metadata().clone();
        let mut input = r.into_inner();
        let (mut count, mut total) = (0u32, 0usize);
        while let Some(m) = input.message().await? {
            count += 1;
            total += m.payload.map_or(0, |p| p.body.len());
        }
        let mut s = self.begin(&md, "StreamingInputCall", count, total);
        s.before_headers().await?;
        Ok(Response::new(StreamingInputCallResponse {
            aggregated_payload_size: total as i32,
        }))
    }

    type FullDuplexCallStream = OutputStream;

    async fn full_duplex_call(
        &self,
        r: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<OutputStream>, Status> {
        // Reads the whole request first (the client half-closes), then
        // answers one response per request message.
        let md = r.metadata().clone();
        let mut input = r.into_inner();
        let mut sizes = Vec::new();
        let mut total = 0usize;
        while let Some(m) = input.message().await? {
            total += m.payload.as_ref().map_or(0, |p| p.body.len());
            sizes.extend(m.response_parameters.iter().map(|p| p.size));
        }
        let mut s = self.begin(&md, "FullDuplexCall", sizes.len() as u32, total);
        s.before_headers().await?;
        Ok(output(sizes, s.after_headers()))
    }

    type HalfDuplexCallStream = OutputStream;

    async fn half_duplex_call(
        &self,
        _r: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<OutputStream>, Status> {
        Err(Status::unimplemented("not in the retry server"))
    }

    async fn unimplemented_call(&self, _r: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("unimplemented"))
    }
}

/// A running retry test server (on its own thread and runtime).
pub struct RetryServer {
    addr: SocketAddr,
    records: Records,
    served: Arc<std::sync::atomic::AtomicU64>,
    /// true: stop gracefully; the thread ends when every connection has.
    stop: Option<watch::Sender<Option<bool>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RetryServer {
    /// Starts on `ip:port` (port 0: any free one). Records are kept per
    /// server; pass the records of a stopped server to [`RetryServer::restart`]
    /// to go on counting.
    pub fn start(ip: IpAddr, port: u16) -> std::io::Result<RetryServer> {
        Self::start_with(ip, port, Records::default(), Default::default())
    }

    /// Starts again on the same address, keeping the records and counts.
    pub fn restart(&self) -> std::io::Result<RetryServer> {
        Self::start_with(
            self.addr.ip(),
            self.addr.port(),
            self.records.clone(),
            self.served.clone(),
        )
    }

    fn start_with(
        ip: IpAddr,
        port: u16,
        records: Records,
        served: Arc<std::sync::atomic::AtomicU64>,
    ) -> std::io::Result<RetryServer> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = watch::channel(None);
        let recs = records.clone();
        let count = served.clone();
        let thread = std::thread::Builder::new()
            .name("retry-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(serve(ip, port, recs, count, stop_rx, ready_tx));
                rt.shutdown_timeout(Duration::from_secs(5));
            })?;
        match ready_rx.recv() {
            Ok(Ok(addr)) => Ok(RetryServer {
                addr,
                records,
                served,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(std::io::Error::other("retry server thread died"))
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ip:port`.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Every attempt of `key` this server (and its earlier runs) saw.
    pub fn attempts(&self, key: &str) -> Vec<AttemptRecord> {
        self.records
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Calls served (with or without a key).
    pub fn served(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops gracefully: GOAWAY on every connection, calls in flight
    /// finish, new ones are refused; returns once all connections closed.
    pub fn stop(mut self) {
        self.finish(true);
    }

    /// Stops at once: connections are dropped without GOAWAY.
    pub fn kill(mut self) {
        self.finish(false);
    }

    fn finish(&mut self, graceful: bool) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(Some(graceful));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RetryServer {
    fn drop(&mut self) {
        self.finish(false);
    }
}

async fn serve(
    ip: IpAddr,
    port: u16,
    records: Records,
    served: Arc<std::sync::atomic::AtomicU64>,
    mut stop: watch::Receiver<Option<bool>>,
    ready: std::sync::mpsc::Sender<std::io::Result<SocketAddr>>,
) {
    let listener = match crate::bind_tcp(SocketAddr::new(ip, port)) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let me = listener.local_addr().expect("bound");
    let _ = ready.send(Ok(me));
    let svc = RetryService {
        records,
        served,
        me,
    };
    let routes = Routes::new(TestServiceServer::new(svc)).prepare();
    let mut conns = tokio::task::JoinSet::new();
    let conn_stop = stop.clone();
    let graceful = loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((io, _)) = r else { continue };
                let _ = io.set_nodelay(true);
                let routes = routes.clone();
                let mut stop = conn_stop.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let routes = routes.clone();
                        async move {
                            let req = req.map(tonic::body::Body::new);
                            routes.oneshot(req).await
                        }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(io), svc);
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = stop.wait_for(|s| s.is_some()) => {}
                    }
                    if *stop.borrow() == Some(true) {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
                    }
                });
            }
            s = stop.wait_for(|s| s.is_some()) => break s.map(|v| *v == Some(true)).unwrap_or(false),
        }
    };
    drop(listener);
    if graceful {
        while conns.join_next().await.is_some() {}
    } else {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}
