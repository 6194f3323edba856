//! HTTP-level behaviour shared by every method: metadata echo, request header
//! reflection, the `x-rgrpc-sleep-ms` delay, the server-side deadline and
//! message compression (see `compression.rs`).
//!
//! This runs as a tower layer around tonic's router, directly under hyper,
//! so it sees the request headers exactly as hyper decoded them and can add
//! to the response headers and trailers of any call, including trailers-only
//! error responses and unknown methods.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

use crate::compression::{
    self, CallCompression, Encoding, Reframer, RequestBody, ResponseRewriter,
};
use crate::tls::PeerIdentity;

pub(crate) const ECHO_INITIAL_PREFIX: &str = "x-grpc-test-echo-initial";
pub(crate) const ECHO_TRAILING_PREFIX: &str = "x-grpc-test-echo-trailing";
pub(crate) const ECHO_REQUEST_HEADERS: &str = "x-rgrpc-echo-request-headers";
pub(crate) const SLEEP_MS: &str = "x-rgrpc-sleep-ms";
pub(crate) const ECHO_ALL: &str = "x-rgrpc-echo-all";
const ECHO_ALL_PREFIX: &str = "x-echo-";
const GRPC_TIMEOUT: &str = "grpc-timeout";
/// The message C-core servers use for DEADLINE_EXCEEDED.
const DEADLINE_MESSAGE: &str = "Deadline Exceeded";

type Fields = Vec<(HeaderName, HeaderValue)>;

#[derive(Debug, Clone, Copy)]
pub(crate) struct InteropLayer {
    /// Largest decompressed request message accepted.
    max_message_size: usize,
}

impl InteropLayer {
    pub(crate) fn new(max_message_size: usize) -> InteropLayer {
        InteropLayer { max_message_size }
    }
}

/// Counts the requests (calls) a server has received.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestCounter(pub(crate) std::sync::Arc<std::sync::atomic::AtomicU64>);

impl RequestCounter {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl<S> Layer<S> for InteropLayer {
    type Service = InteropHttpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InteropHttpService {
            inner,
            max_message_size: self.max_message_size,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct InteropHttpService<S> {
    inner: S,
    max_message_size: usize,
}

/// What to do around one call, decided from its request headers.
struct Plan {
    sleep: Option<Duration>,
    /// From the request's `grpc-timeout`, counted from its arrival here.
    deadline: Option<Instant>,
    /// Added to the response headers (echoed initial metadata, reflected
    /// request headers).
    initial: Fields,
    /// Added to the trailers (or to the headers of a trailers-only response).
    trailing: Fields,
    /// The request's `grpc-encoding` (`Err(name)`: not supported).
    encoding: Result<Option<Encoding>, String>,
    /// The client lists gzip in `grpc-accept-encoding`.
    accepts_gzip: bool,
    /// `x-rgrpc-echo-compression: 1`: report the request messages'
    /// compressed flags in the trailers.
    echo_compression: bool,
    /// Shared with the handler.
    call: CallCompression,
}

impl Plan {
    fn from_request<B>(req: &http::Request<B>) -> Plan {
        let headers = req.headers();
        let mut plan = Plan {
            sleep: None,
            deadline: None,
            initial: Fields::new(),
            trailing: Fields::new(),
            encoding: compression::request_encoding(headers),
            accepts_gzip: compression::accepts_gzip(headers),
            echo_compression: headers
                .get(compression::ECHO_COMPRESSION)
                .is_some_and(|v| v.as_bytes() == b"1"),
            call: CallCompression::default(),
        };
        for (name, value) in headers.iter() {
            let n = name.as_str();
            if n.starts_with(ECHO_INITIAL_PREFIX) {
                plan.initial.push((name.clone(), value.clone()));
            } else if n.starts_with(ECHO_TRAILING_PREFIX) {
                plan.trailing.push((name.clone(), value.clone()));
            }
        }
        plan.sleep = headers
            .get(SLEEP_MS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        plan.deadline = headers
            .get(GRPC_TIMEOUT)
            .and_then(parse_grpc_timeout)
            .map(|t| Instant::now() + t);
        if headers
            .get(ECHO_REQUEST_HEADERS)
            .is_some_and(|v| v.as_bytes() == b"1")
        {
            reflect_request(req, &mut plan.initial);
        }
        if headers.get(ECHO_ALL).is_some_and(|v| v.as_bytes() == b"1") {
            echo_all(headers, &mut plan.initial);
        }
        plan
    }

    fn apply(mut self, resp: http::Response<Body>) -> http::Response<Body> {
        let (mut parts, body) = resp.into_parts();
        for (name, value) in self.initial {
            parts.headers.append(name, value);
        }
        if !parts.headers.contains_key("grpc-accept-encoding") {
            parts.headers.insert(
                "grpc-accept-encoding",
                HeaderValue::from_static(compression::ACCEPTED),
            );
        }
        let echo = self.echo_compression.then(|| self.call.clone());
        let trailers_only = parts.headers.contains_key("grpc-status");
        if trailers_only {
            // Trailers-only response (e.g. a unary call failing): the trailing
            // metadata travels in the only HEADERS frame there is.
            if let Some(call) = echo {
                self.trailing.push((
                    HeaderName::from_static(compression::COMPRESSED_FLAGS),
                    call.flags_value(),
                ));
            }
            for (name, value) in self.trailing {
                parts.headers.append(name, value);
            }
            return http::Response::from_parts(parts, body);
        }
        // The handler has returned: a unary one has decided about its
        // response, a streaming one has announced whether it may compress.
        let compress = self.accepts_gzip && self.call.compressing();
        if compress {
            parts
                .headers
                .insert("grpc-encoding", HeaderValue::from_static("gzip"));
        }
        if self.trailing.is_empty() && self.deadline.is_none() && !compress && echo.is_none() {
            return http::Response::from_parts(parts, body);
        }
        let body = Body::new(ResponseBody {
            inner: Some(body),
            extra: Some(self.trailing),
            echo,
            deadline: self.deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            compress: compress.then(|| (Reframer::new(), ResponseRewriter::new(self.call))),
        });
        http::Response::from_parts(parts, body)
    }
}

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits and a unit.
fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let s = value.to_str().ok()?;
    if s.len() < 2 || s.len() > 9 {
        return None;
    }
    let (digits, unit) = s.split_at(s.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn deadline_exceeded_response() -> http::Response<Body> {
    let (parts, ()) = Status::deadline_exceeded(DEADLINE_MESSAGE)
        .into_http::<()>()
        .into_parts();
    http::Response::from_parts(parts, Body::empty())
}

/// Header reflection: copies selected request headers (and the request's
/// authority, path and header-name order) into `x-rgrpc-req-*` response
/// headers.
fn reflect_request<B>(req: &http::Request<B>, out: &mut Fields) {
    let headers = req.headers();
    for (src, dst) in [
        ("te", "x-rgrpc-req-te"),
        ("user-agent", "x-rgrpc-req-user-agent"),
        ("content-type", "x-rgrpc-req-content-type"),
        ("grpc-timeout", "x-rgrpc-req-grpc-timeout"),
        ("grpc-encoding", "x-rgrpc-req-grpc-encoding"),
        ("grpc-accept-encoding", "x-rgrpc-req-grpc-accept-encoding"),
        ("authorization", "x-rgrpc-req-authorization"),
    ] {
        for value in headers.get_all(src) {
            out.push((HeaderName::from_static(dst), value.clone()));
        }
    }

    let authority = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| headers.get(http::header::HOST).cloned());
    if let Some(authority) = authority {
        out.push((HeaderName::from_static("x-rgrpc-req-authority"), authority));
    }

    if let Some(path) = req
        .uri()
        .path_and_query()
        .and_then(|p| HeaderValue::from_str(p.as_str()).ok())
    {
        out.push((HeaderName::from_static("x-rgrpc-req-path"), path));
    }

    out.push((
        HeaderName::from_static("x-rgrpc-req-header-order"),
        header_order(headers),
    ));

    if let Some(peer) = req.extensions().get::<PeerIdentity>() {
        if let Ok(cn) = HeaderValue::from_str(&peer.name) {
            out.push((HeaderName::from_static("x-rgrpc-req-peer-cn"), cn));
        }
    }
}

/// `x-rgrpc-echo-all`: copies every request metadata item that is not
/// reserved to `x-echo-<key>` (binary values stay base64, as received, under
/// a name that still ends in `-bin`).
fn echo_all(headers: &HeaderMap, out: &mut Fields) {
    for (name, value) in headers {
        let n = name.as_str();
        if n.starts_with("grpc-") || matches!(n, "user-agent" | "te" | "content-type") {
            continue;
        }
        if let Ok(echoed) = HeaderName::from_bytes(format!("{ECHO_ALL_PREFIX}{n}").as_bytes()) {
            out.push((echoed, value.clone()));
        }
    }
}

/// Names of all request header fields, one entry per field, in `HeaderMap`
/// iteration order. h2 inserts fields in wire order, and `HeaderMap` keeps
/// names in first-insertion order, so this is the wire order except that
/// repeated fields of one name are listed together, at the first one's place.
fn header_order(headers: &HeaderMap) -> HeaderValue {
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    HeaderValue::from_str(&names.join(",")).expect("header names are valid header value characters")
}

impl<S, B> Service<http::Request<B>> for InteropHttpService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Use the service that was polled ready; leave a fresh clone behind.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let plan = Plan::from_request(&req);
        // tonic gets the request with compressed messages already inflated
        // (and no grpc-encoding, which it would refuse), and the handler
        // finds the call's compression state in the extensions.
        let (mut parts, body) = req.into_parts();
        parts.headers.remove("grpc-encoding");
        parts.extensions.insert(plan.call.clone());
        let encoding = plan.encoding.clone();
        let body = RequestBody::new(
            body,
            encoding.clone().unwrap_or(None),
            self.max_message_size,
            plan.call.clone(),
        );
        let req = http::Request::from_parts(parts, Body::new(body));
        Box::pin(async move {
            let respond = async {
                if let Some(delay) = plan.sleep {
                    tokio::time::sleep(delay).await;
                }
                match encoding {
                    Err(name) => Ok(compression::unsupported_encoding_response(&name)),
                    Ok(_) => inner.call(req).await,
                }
            };
            let resp = match plan.deadline {
                None => respond.await?,
                Some(deadline) => match tokio::time::timeout_at(deadline, respond).await {
                    Ok(resp) => resp?,
                    // Deadline passed before the response headers: a
                    // trailers-only DEADLINE_EXCEEDED (the handler is dropped).
                    Err(_) => deadline_exceeded_response(),
                },
            };
            Ok(plan.apply(resp))
        })
    }
}

/// Response body wrapper that appends fields to the body's trailers and,
/// when the request had a deadline, ends the call with DEADLINE_EXCEEDED if
/// the deadline passes before the handler finishes (dropping the handler's
/// response stream).
struct ResponseBody {
    inner: Option<Body>,
    extra: Option<Fields>,
    /// Adds `x-rgrpc-req-compressed-flags` from this to the trailers.
    echo: Option<CallCompression>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// gzip-compresses the response messages the handler selected.
    compress: Option<(Reframer, ResponseRewriter)>,
}

impl ResponseBody {
    fn with_extra(&mut self, mut trailers: HeaderMap) -> Frame<Bytes> {
        for (name, value) in self.extra.take().into_iter().flatten() {
            trailers.append(name, value);
        }
        if let Some(call) = self.echo.take() {
            trailers.append(
                HeaderName::from_static(compression::COMPRESSED_FLAGS),
                call.flags_value(),
            );
        }
        Frame::trailers(trailers)
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(deadline) = this.deadline.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    this.inner = None;
                    this.deadline = None;
                    let mut trailers = HeaderMap::new();
                    Status::deadline_exceeded(DEADLINE_MESSAGE).add_header(&mut trailers)?;
                    return Poll::Ready(Some(Ok(this.with_extra(trailers))));
                }
            }
            let frame = match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    this.inner = None;
                    this.deadline = None;
                    return Poll::Ready(None);
                }
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        this.deadline = None;
                        return Poll::Ready(Some(Ok(this.with_extra(trailers))));
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
            };
            let Some((reframer, rewriter)) = this.compress.as_mut() else {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            };
            let mut out = BytesMut::new();
            reframer.feed(&data, rewriter, &mut out)?;
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
            // Only part of a message to be compressed so far: read on.
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(body) => body.is_end_stream(),
            None => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}
