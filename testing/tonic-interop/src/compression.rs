//! Message compression, done at the HTTP level because tonic hides each
//! message's compressed flag and compresses whole response streams only.
//!
//! Requests: the layer inflates gzip- and deflate-compressed request
//! messages itself ([`RequestBody`]) and hands tonic a plain stream, recording
//! every message's compressed flag in the call's [`CallCompression`] (a
//! request extension) for the handlers' `expect_compressed` checks.
//!
//! Responses: handlers say per response message whether to compress it
//! ([`CallCompression::next_response`]); when the client accepts gzip, the
//! layer sets `grpc-encoding: gzip` and rewrites the selected messages of
//! tonic's (uncompressed) response body ([`ResponseRewriter`]).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::GzEncoder;
use http::header::{HeaderMap, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;

/// Request metadata asking for the per-message compressed flags of the
/// request in the trailers.
pub(crate) const ECHO_COMPRESSION: &str = "x-rgrpc-echo-compression";
/// Trailer carrying them: `0`/`1` per received request message, comma-separated.
pub(crate) const COMPRESSED_FLAGS: &str = "x-rgrpc-req-compressed-flags";
/// What this server accepts, sent as the response's `grpc-accept-encoding`.
pub(crate) const ACCEPTED: &str = "gzip,deflate";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request message compression this server can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Gzip,
    /// gRPC's "deflate": the zlib format.
    Deflate,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// A request's `grpc-encoding`: `Ok(None)` when absent or `identity`,
/// `Err(name)` when this server does not support it.
pub(crate) fn request_encoding(headers: &HeaderMap) -> Result<Option<Encoding>, String> {
    let Some(value) = headers.get("grpc-encoding") else {
        return Ok(None);
    };
    match value.as_bytes() {
        b"identity" => Ok(None),
        b"gzip" => Ok(Some(Encoding::Gzip)),
        b"deflate" => Ok(Some(Encoding::Deflate)),
        other => Err(String::from_utf8_lossy(other).into_owned()),
    }
}

/// Whether the request's `grpc-accept-encoding` lists gzip.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all("grpc-accept-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| name.trim() == "gzip")
}

/// Trailers-only UNIMPLEMENTED for a request compressed with an encoding
/// this server does not support (what the compression spec asks for).
pub(crate) fn unsupported_encoding_response(name: &str) -> http::Response<tonic::body::Body> {
    let status = Status::unimplemented(format!(
        "Content is compressed with `{name}` which isn't supported"
    ));
    let (mut parts, ()) = status.into_http::<()>().into_parts();
    parts
        .headers
        .insert("grpc-accept-encoding", HeaderValue::from_static(ACCEPTED));
    http::Response::from_parts(parts, tonic::body::Body::empty())
}

/// Per-call compression state shared by the layer and the handler (the
/// handler finds it in the request extensions).
#[derive(Debug, Clone, Default)]
pub(crate) struct CallCompression(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    /// One entry per request message seen so far: did it have the
    /// compressed flag.
    received: Vec<bool>,
    /// Some response message may be compressed (decided before the
    /// response headers leave: it puts `grpc-encoding: gzip` in them).
    may_compress: bool,
    /// Decisions for the response messages not yet written, in order.
    pending: VecDeque<bool>,
}

impl CallCompression {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether request message `index` (0-based) arrived compressed; false
    /// when it is unknown (no layer in front of the service).
    pub(crate) fn request_compressed(&self, index: usize) -> bool {
        self.state().received.get(index).copied().unwrap_or(false)
    }

    /// Announces, before the handler returns its response, that some later
    /// response message may be compressed (streaming responses).
    pub(crate) fn may_compress(&self) {
        self.state().may_compress = true;
    }

    /// Decides for the next response message the handler sends: compress
    /// it or not. Must be called before the message is handed to tonic. A
    /// `true` before the response headers also counts as [`Self::may_compress`].
    pub(crate) fn next_response(&self, compress: bool) {
        let mut state = self.state();
        state.pending.push_back(compress);
        state.may_compress |= compress;
    }

    pub(crate) fn compressing(&self) -> bool {
        self.state().may_compress
    }

    fn record_request(&self, compressed: bool) {
        self.state().received.push(compressed);
    }

    fn take_response_decision(&self) -> bool {
        self.state().pending.pop_front().unwrap_or(false)
    }

    /// The `x-rgrpc-req-compressed-flags` value: "0"/"1" per request
    /// message received, comma-separated (empty when there was none).
    pub(crate) fn flags_value(&self) -> HeaderValue {
        let flags: Vec<&str> = self
            .state()
            .received
            .iter()
            .map(|c| if *c { "1" } else { "0" })
            .collect();
        HeaderValue::from_str(&flags.join(",")).expect("digits and commas")
    }
}

/// What a [`Reframer`] does with each message of the stream it rewrites.
pub(crate) trait Rewriter {
    /// A message header was read. Return true to have the whole message
    /// buffered and passed to [`Rewriter::rewrite`], false to pass it on
    /// unchanged as it arrives.
    fn header(&mut self, flag: u8, len: usize) -> Result<bool, Status>;
    /// Writes the replacement for a buffered message (header included).
    fn rewrite(&mut self, flag: u8, message: Vec<u8>, out: &mut BytesMut) -> Result<(), Status>;
}

enum ReframeState {
    /// Reading a 5-byte message header (`header_len` bytes so far).
    Header,
    /// Copying this many more bytes of a message through.
    Pass(usize),
    /// Collecting a message for [`Rewriter::rewrite`].
    Buffer {
        flag: u8,
        remaining: usize,
        data: Vec<u8>,
    },
}

/// Splits a stream of gRPC length-prefixed messages, arriving in chunks of
/// any size, into messages and rewrites the selected ones.
pub(crate) struct Reframer {
    header: [u8; 5],
    header_len: usize,
    state: ReframeState,
}

impl Reframer {
    pub(crate) fn new() -> Reframer {
        Reframer {
            header: [0; 5],
            header_len: 0,
            state: ReframeState::Header,
        }
    }

    /// Between messages (nothing partial held or in flight).
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.state, ReframeState::Header) && self.header_len == 0
    }

    /// Feeds one chunk; what is ready to go on is appended to `out`.
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        rw: &mut impl Rewriter,
        out: &mut BytesMut,
    ) -> Result<(), Status> {
        while !data.is_empty() {
            match &mut self.state {
                ReframeState::Header => {
                    let n = (5 - self.header_len).min(data.len());
                    self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
                    self.header_len += n;
                    data = &data[n..];
                    if self.header_len < 5 {
                        continue;
                    }
                    self.header_len = 0;
                    let flag = self.header[0];
                    let len = u32::from_be_bytes([
                        self.header[1],
                        self.header[2],
                        self.header[3],
                        self.header[4],
                    ]) as usize;
                    self.state = if rw.header(flag, len)? {
                        ReframeState::Buffer {
                            flag,
                            remaining: len,
                            data: Vec::with_capacity(len.min(1 << 20)),
                        }
                    } else {
                        out.extend_from_slice(&self.header);
                        ReframeState::Pass(len)
                    };
                }
                ReframeState::Pass(remaining) => {
                    let n = (*remaining).min(data.len());
                    out.extend_from_slice(&data[..n]);
                    *remaining -= n;
                    data = &data[n..];
                }
                ReframeState::Buffer {
                    remaining,
                    data: buf,
                    ..
                } => {
                    let n = (*remaining).min(data.len());
                    buf.extend_from_slice(&data[..n]);
                    *remaining -= n;
                    data = &data[n..];
                }
            }
            // A message just completed (possibly an empty one).
            match &mut self.state {
                ReframeState::Pass(0) => self.state = ReframeState::Header,
                ReframeState::Buffer {
                    flag,
                    remaining: 0,
                    data: buf,
                } => {
                    let (flag, message) = (*flag, std::mem::take(buf));
                    self.state = ReframeState::Header;
                    rw.rewrite(flag, message, out)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// At the end of the stream: the bytes of a partial header held back,
    /// so that the reader sees the truncation (empty when idle or in the
    /// middle of a passed-through message); a truncated buffered message is
    /// an error, as tonic reports it.
    pub(crate) fn leftover(&mut self) -> Result<Bytes, Status> {
        let state = std::mem::replace(&mut self.state, ReframeState::Header);
        let header_len = std::mem::take(&mut self.header_len);
        match state {
            ReframeState::Header => Ok(Bytes::copy_from_slice(&self.header[..header_len])),
            ReframeState::Pass(_) => Ok(Bytes::new()),
            ReframeState::Buffer { .. } => Err(Status::internal("Unexpected EOF decoding stream.")),
        }
    }
}

fn put_message(out: &mut BytesMut, flag: u8, message: &[u8]) {
    out.reserve(5 + message.len());
    out.put_u8(flag);
    out.put_u32(message.len() as u32);
    out.extend_from_slice(message);
}

/// Inflates compressed request messages and records every message's flag.
struct RequestRewriter {
    encoding: Option<Encoding>,
    limit: usize,
    call: CallCompression,
}

impl Rewriter for RequestRewriter {
    fn header(&mut self, flag: u8, _len: usize) -> Result<bool, Status> {
        // Flags other than 0 and 1 go through for tonic to reject.
        self.call.record_request(flag == 1);
        if flag != 1 {
            return Ok(false);
        }
        if self.encoding.is_none() {
            return Err(Status::internal(
                "compressed request message, but the request has no grpc-encoding",
            ));
        }
        Ok(true)
    }

    fn rewrite(&mut self, _flag: u8, message: Vec<u8>, out: &mut BytesMut) -> Result<(), Status> {
        let encoding = self.encoding.expect("checked in header");
        let plain = inflate(encoding, &message, self.limit)?;
        put_message(out, 0, &plain);
        Ok(())
    }
}

/// Decompresses `data`, producing at most `limit` bytes: a larger message
/// fails with OUT_OF_RANGE (tonic's code for an oversized message) without
/// ever holding more than `limit + 1` bytes; corrupt data with INTERNAL.
fn inflate(encoding: Encoding, data: &[u8], limit: usize) -> Result<Vec<u8>, Status> {
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Gzip => Box::new(GzDecoder::new(data)),
        Encoding::Deflate => Box::new(ZlibDecoder::new(data)),
    };
    let mut plain = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| {
            Status::internal(format!(
                "could not decompress the {} request message: {e}",
                encoding.name()
            ))
        })?;
    if plain.len() > limit {
        return Err(Status::out_of_range(format!(
            "decompressed request message larger than {limit} bytes"
        )));
    }
    Ok(plain)
}

/// gzip-compresses the response messages the handler asked for.
pub(crate) struct ResponseRewriter {
    call: CallCompression,
}

impl ResponseRewriter {
    pub(crate) fn new(call: CallCompression) -> ResponseRewriter {
        ResponseRewriter { call }
    }
}

impl Rewriter for ResponseRewriter {
    fn header(&mut self, flag: u8, _len: usize) -> Result<bool, Status> {
        Ok(self.call.take_response_decision() && flag == 0)
    }

    fn rewrite(&mut self, _flag: u8, message: Vec<u8>, out: &mut BytesMut) -> Result<(), Status> {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        let compressed = gz
            .write_all(&message)
            .and_then(|()| gz.finish())
            .map_err(|e| Status::internal(format!("gzip failed: {e}")))?;
        put_message(out, 1, &compressed);
        Ok(())
    }
}

/// The request body tonic reads: the client's, with compressed messages
/// inflated (so tonic sees only uncompressed ones) and each message's flag
/// recorded. Uncompressed messages are passed on as they arrive.
pub(crate) struct RequestBody<B> {
    inner: B,
    reframer: Reframer,
    rewriter: RequestRewriter,
    /// A trailers frame held back while partial bytes go out first.
    trailers: Option<HeaderMap>,
    done: bool,
}

impl<B> RequestBody<B> {
    pub(crate) fn new(
        inner: B,
        encoding: Option<Encoding>,
        limit: usize,
        call: CallCompression,
    ) -> RequestBody<B> {
        RequestBody {
            inner,
            reframer: Reframer::new(),
            rewriter: RequestRewriter {
                encoding,
                limit,
                call,
            },
            trailers: None,
            done: false,
        }
    }
}

impl<B> HttpBody for RequestBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                match this.reframer.leftover() {
                    Ok(leftover) if !leftover.is_empty() => {
                        return Poll::Ready(Some(Ok(Frame::data(leftover))));
                    }
                    Ok(_) => {}
                    Err(status) => {
                        this.trailers = None;
                        return Poll::Ready(Some(Err(Box::new(status))));
                    }
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    continue;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        this.trailers = Some(trailers);
                        this.done = true;
                    }
                    continue;
                }
            };
            let mut out = BytesMut::new();
            if let Err(status) = this.reframer.feed(&data, &mut this.rewriter, &mut out) {
                this.done = true;
                this.reframer = Reframer::new();
                this.trailers = None;
                return Poll::Ready(Some(Err(Box::new(status))));
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.reframer.is_idle() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
