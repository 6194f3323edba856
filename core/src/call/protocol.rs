//! The gRPC protocol rules of a call, as pure functions with no I/O and no
//! state (`doc/PROTOCOL-HTTP2.md` in the grpc/grpc repository): the
//! request headers; response headers, Trailers-Only and trailers to a
//! status; the HTTP status mapping; the end-of-stream checks; message
//! decompression with its limit; which stream failures are safe to retry.

use crate::channel::MetadataLimits;
use crate::codec::compression::{self, Compression, DecompressError};
use crate::codec::framing::DecodeError;
use crate::codec::{percent, timeout};
use crate::metadata::Metadata;
use crate::status::{self, Code, Status};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, TE, USER_AGENT};
use std::time::Duration;

// Header names as constants: no parsing per call.
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
static GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");

/// Validates a method path: `/` followed by printable ASCII without spaces,
/// `?` or `#`.
pub fn validate_method(method: &str) -> Result<(), String> {
    if !method.starts_with('/') || method.len() < 2 {
        return Err(format!(
            "{method:?} must start with '/' (e.g. \"/package.Service/Method\")"
        ));
    }
    if let Some(c) = method
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '?' || *c == '#')
    {
        return Err(format!("{method:?} contains the character {c:?}"));
    }
    Ok(())
}

/// The request of one attempt: `POST uri` with gRPC's headers, then the
/// application's metadata lists in order. `timeout` is the time left
/// before the deadline (sent as `grpc-timeout`).
pub(crate) fn build_request(
    uri: &http::Uri,
    timeout: Option<Duration>,
    compression: Compression,
    user_agent: &HeaderValue,
    metadata: &[&Metadata],
) -> Result<http::Request<()>, Status> {
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(uri.clone())
        .version(http::Version::HTTP_2)
        .body(())
        .map_err(|e| Status::new(Code::Internal, format!("building request: {e}")))?;
    let h = req.headers_mut();
    h.insert(TE, HeaderValue::from_static("trailers"));
    if let Some(left) = timeout {
        let v = HeaderValue::from_str(&timeout::encode(left)).expect("ascii timeout");
        h.insert(GRPC_TIMEOUT.clone(), v);
    }
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    if compression != Compression::Identity {
        h.insert(
            GRPC_ENCODING.clone(),
            HeaderValue::from_static(compression.name()),
        );
    }
    h.insert(
        GRPC_ACCEPT_ENCODING.clone(),
        HeaderValue::from_static(compression::ACCEPT_ENCODING),
    );
    h.insert(USER_AGENT, request_user_agent(user_agent, metadata)?);
    for md in metadata {
        md.append_to_headers(h)
            .map_err(|e| Status::new(Code::Internal, e.0))?;
    }
    Ok(req)
}

/// The request's user agent: the application's `user-agent` metadata
/// values (space-separated, in order), then the channel's.
fn request_user_agent(
    channel_ua: &HeaderValue,
    metadata: &[&Metadata],
) -> Result<HeaderValue, Status> {
    let mut app = metadata
        .iter()
        .flat_map(|md| md.find_all(crate::metadata::USER_AGENT))
        .peekable();
    if app.peek().is_none() {
        return Ok(channel_ua.clone());
    }
    let mut ua = Vec::new();
    for v in app {
        ua.extend_from_slice(v);
        ua.push(b' ');
    }
    ua.extend_from_slice(channel_ua.as_bytes());
    HeaderValue::from_bytes(&ua)
        .map_err(|e| Status::new(Code::Internal, format!("user-agent metadata: {e}")))
}

/// What the response headers say.
#[derive(Debug)]
pub(crate) enum ResponseHead {
    /// A gRPC response follows: the initial metadata, the message encoding
    /// as sent (`"identity"` when absent), and the encoding messages flagged
    /// as compressed use (None for identity).
    Ok {
        metadata: Metadata,
        raw_encoding: String,
        encoding: Option<String>,
    },
    /// Trailers-Only: the status came in the only header block.
    TrailersOnly(Status),
    /// Not a gRPC response (HTTP error, wrong content-type).
    Fail(Status),
}

/// Classifies the first header block of a response; `end_stream` says it
/// ended the stream.
pub(crate) fn response_head(parts: &http::response::Parts, end_stream: bool) -> ResponseHead {
    let http_status = parts.status.as_u16();
    let h = &parts.headers;
    if end_stream {
        if h.contains_key(&GRPC_STATUS) {
            return ResponseHead::TrailersOnly(status_from_trailers(h));
        }
        return ResponseHead::Fail(http_status_to_status(http_status, h));
    }
    if http_status != 200 {
        return ResponseHead::Fail(http_status_to_status(http_status, h));
    }
    let ct = h.get(CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or(b"");
    let is_grpc = ct == b"application/grpc"
        || ct.starts_with(b"application/grpc+")
        || ct.starts_with(b"application/grpc;");
    if !is_grpc {
        return ResponseHead::Fail(Status::new(
            Code::Unknown,
            format!(
                "server answered with content-type {:?}, not application/grpc",
                String::from_utf8_lossy(ct)
            ),
        ));
    }
    let raw_encoding = h
        .get(&GRPC_ENCODING)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| "identity".into());
    let encoding = Some(raw_encoding.clone()).filter(|e| e != "identity");
    ResponseHead::Ok {
        metadata: Metadata::from_headers(h),
        raw_encoding,
        encoding,
    }
}

/// The status of a response that is not gRPC: from the HTTP status
/// (`doc/http-grpc-status-mapping.md` in grpc/grpc).
pub(crate) fn http_status_to_status(http_status: u16, h: &HeaderMap) -> Status {
    let code = Code::from_http_status(http_status);
    let ct = h
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    Status::new(
        code,
        format!(
            "server answered HTTP status {http_status} without a gRPC status (content-type {ct:?})"
        ),
    )
}

/// The status in trailers (or a Trailers-Only header block), with the
/// trailing metadata.
pub(crate) fn status_from_trailers(h: &HeaderMap) -> Status {
    let md = Metadata::from_headers(h);
    let message = h
        .get(&GRPC_MESSAGE)
        .map(|v| percent::decode(v.as_bytes()))
        .unwrap_or_default();
    match h.get(&GRPC_STATUS) {
        Some(v) => match Code::parse_header(v.as_bytes()) {
            Some(code) => Status::with_trailers(code, message, md),
            None => Status::with_trailers(
                Code::Unknown,
                format!(
                    "server sent an invalid grpc-status {:?}: {message}",
                    String::from_utf8_lossy(v.as_bytes())
                ),
                md,
            ),
        },
        None => Status::with_trailers(
            Code::Unknown,
            "server sent trailers without grpc-status",
            md,
        ),
    }
}

/// The status when the response stream ends: from the trailers (or their
/// absence), made an error when the stream ended inside a message
/// (`partial`) or when a call that expects one response got none.
pub(crate) fn end_of_stream_status(
    trailers: Result<Option<HeaderMap>, h2::Error>,
    partial: bool,
    unary_response: bool,
    received: u64,
) -> Status {
    let s = match trailers {
        Ok(Some(t)) => status_from_trailers(&t),
        Ok(None) => Status::new(
            Code::Internal,
            "server closed the stream without sending trailers",
        ),
        Err(e) => status::from_h2_error(&e),
    };
    if s.is_ok() && partial {
        return Status::new(Code::Internal, "stream ended in the middle of a message");
    }
    expect_response(s, unary_response, received)
}

/// An OK status of a call that expects one response but received none
/// becomes UNIMPLEMENTED (the spec's cardinality rule, as C++ reports it),
/// also when it came Trailers-Only.
pub(crate) fn expect_response(s: Status, unary_response: bool, received: u64) -> Status {
    if s.is_ok() && unary_response && received == 0 {
        return Status::new(
            Code::Unimplemented,
            "received no response message for a call that expects one",
        );
    }
    s
}

/// A second response message on a call that expects one.
pub(crate) fn too_many_responses() -> Status {
    Status::new(
        Code::Unimplemented,
        "received more than one response message for a call that expects one",
    )
}

/// A message prefix the client refuses.
pub(crate) fn decode_error_status(e: DecodeError) -> Status {
    match e {
        DecodeError::TooLarge { len, max } => Status::new(
            Code::ResourceExhausted,
            format!("Received message larger than max ({len} vs. {max})"),
        ),
        DecodeError::BadFlag(f) => Status::new(
            Code::Internal,
            format!("invalid message prefix: compressed flag byte {f}"),
        ),
    }
}

/// A message the application tried to send over the send limit.
pub(crate) fn send_too_large(len: usize, max: usize) -> Status {
    Status::new(
        Code::ResourceExhausted,
        format!("Sent message larger than max ({len} vs. {max})"),
    )
}

/// The status of a call whose deadline passed.
pub(crate) fn deadline_status() -> Status {
    Status::new(Code::DeadlineExceeded, "Deadline Exceeded")
}

/// Inflates a message flagged as compressed with the response's
/// `encoding`, the receive limit applied to the decompressed size.
pub(crate) fn decompress(
    encoding: Option<&str>,
    data: &[u8],
    limit: Option<usize>,
) -> Result<Bytes, Status> {
    let Some(name) = encoding else {
        return Err(Status::new(
            Code::Internal,
            "received a compressed message but the response has no grpc-encoding header",
        ));
    };
    let Some(alg) = Compression::from_name(name) else {
        return Err(Status::new(
            Code::Internal,
            format!(
                "received a message compressed with {name:?}, which this client does not support (supported: {})",
                compression::SUPPORTED
            ),
        ));
    };
    match alg.decompress(data, limit) {
        Ok(v) => Ok(Bytes::from(v)),
        Err(DecompressError::TooLarge { limit }) => Err(Status::new(
            Code::ResourceExhausted,
            format!("Received message larger than max: decompressed size exceeds {limit} bytes"),
        )),
        Err(DecompressError::Corrupt(e)) => Err(Status::new(
            Code::Internal,
            format!("could not decompress a {name} message: {e}"),
        )),
    }
}

/// The size of a header block as HTTP/2 counts it (RFC 7541 §4.1: name,
/// value and 32 bytes per entry).
pub(crate) fn header_list_size(h: &HeaderMap) -> usize {
    h.iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum()
}

/// Received metadata over the channel's limits (C-core's rule): over the
/// hard limit it is refused; between the soft and the hard limit with a
/// probability growing linearly from 0 to 1 (`roll` is uniform in [0, 1)).
pub(crate) fn received_metadata_status(
    size: usize,
    limits: MetadataLimits,
    roll: f64,
) -> Option<Status> {
    if size > limits.hard {
        return Some(Status::new(
            Code::ResourceExhausted,
            format!(
                "received metadata of {size} bytes, more than grpc.absolute_max_metadata_size ({} bytes)",
                limits.hard
            ),
        ));
    }
    if size > limits.soft {
        let p = (size - limits.soft) as f64 / (limits.hard - limits.soft).max(1) as f64;
        if roll < p {
            return Some(Status::new(
                Code::ResourceExhausted,
                format!(
                    "received metadata of {size} bytes, more than grpc.max_metadata_size ({} bytes): refused with probability {p:.2}, as C-core does between the soft and the hard limit",
                    limits.soft
                ),
            ));
        }
    }
    None
}

/// Request metadata over the hard limit is not sent.
pub(crate) fn sent_metadata_status(h: &HeaderMap, limits: MetadataLimits) -> Result<(), Status> {
    let size = header_list_size(h);
    if size > limits.hard {
        return Err(Status::new(
            Code::ResourceExhausted,
            format!(
                "request metadata of {size} bytes is larger than grpc.absolute_max_metadata_size ({} bytes); raise it to send more",
                limits.hard
            ),
        ));
    }
    Ok(())
}

/// Why opening a stream failed, typed from h2's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenFailure {
    /// The connection went away (GOAWAY, I/O error, closed) or the server
    /// refused the stream (REFUSED_STREAM) before the request reached the
    /// server's application: safe to retry on another connection.
    NotSent {
        /// The server sent GOAWAY (a graceful end, not a failure).
        goaway: bool,
    },
    /// Anything else: the call fails with the error's status.
    Fatal,
}

/// Classifies a failure of `SendRequest::ready` / `send_request`.
pub(crate) fn open_failure(e: &h2::Error) -> OpenFailure {
    if e.is_go_away() || e.is_io() || e.reason() == Some(h2::Reason::REFUSED_STREAM) {
        OpenFailure::NotSent {
            goaway: e.is_go_away(),
        }
    } else {
        OpenFailure::Fatal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, headers: &[(&'static str, &str)]) -> http::response::Parts {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn trailers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn method_paths() {
        assert!(validate_method("/pkg.Svc/M").is_ok());
        assert!(validate_method("pkg.Svc/M").is_err());
        assert!(validate_method("/").is_err());
        assert!(validate_method("/a b").unwrap_err().contains("' '"));
        assert!(validate_method("/a?b").is_err());
    }

    #[test]
    fn request_headers() {
        let uri: http::Uri = "http://h:1/p.S/M".parse().unwrap();
        let mut md = Metadata::new();
        md.add("x-a", b"1").unwrap();
        let ua = HeaderValue::from_static("ua/1");
        let r = build_request(
            &uri,
            Some(Duration::from_millis(1500)),
            Compression::Gzip,
            &ua,
            &[&md],
        )
        .unwrap();
        let h = r.headers();
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-encoding"], "gzip");
        assert_eq!(h["user-agent"], "ua/1");
        assert_eq!(h["x-a"], "1");
        let sent = timeout::decode(h["grpc-timeout"].to_str().unwrap()).unwrap();
        assert_eq!(sent, Duration::from_millis(1500));
        let mut app = Metadata::new();
        app.add("user-agent", b"my-client/1.0").unwrap();
        let r = build_request(&uri, None, Compression::Identity, &ua, &[&app]).unwrap();
        assert_eq!(r.headers().get_all("user-agent").iter().count(), 1);
        assert_eq!(r.headers()["user-agent"], "my-client/1.0 ua/1");
        let r = build_request(&uri, None, Compression::Identity, &ua, &[]).unwrap();
        assert!(!r.headers().contains_key("grpc-timeout"));
        assert!(!r.headers().contains_key("grpc-encoding"));
    }

    #[test]
    fn response_heads() {
        match response_head(&head(200, &[("content-type", "application/grpc")]), false) {
            ResponseHead::Ok {
                raw_encoding,
                encoding,
                ..
            } => {
                assert_eq!(raw_encoding, "identity");
                assert_eq!(encoding, None);
            }
            other => panic!("{other:?}"),
        }
        match response_head(
            &head(
                200,
                &[
                    ("content-type", "application/grpc+proto"),
                    ("grpc-encoding", "gzip"),
                ],
            ),
            false,
        ) {
            ResponseHead::Ok { encoding, .. } => assert_eq!(encoding.as_deref(), Some("gzip")),
            other => panic!("{other:?}"),
        }
        // Trailers-Only.
        match response_head(
            &head(
                200,
                &[("grpc-status", "5"), ("grpc-message", "gone%20away")],
            ),
            true,
        ) {
            ResponseHead::TrailersOnly(s) => {
                assert_eq!(s.code(), Code::NotFound);
                assert_eq!(s.message(), "gone away");
            }
            other => panic!("{other:?}"),
        }
        // HTTP errors without a gRPC status.
        for (http, code) in [(404, Code::Unimplemented), (503, Code::Unavailable)] {
            match response_head(&head(http, &[]), true) {
                ResponseHead::Fail(s) => assert_eq!(s.code(), code),
                other => panic!("{other:?}"),
            }
        }
        match response_head(&head(200, &[("content-type", "text/html")]), false) {
            ResponseHead::Fail(s) => assert_eq!(s.code(), Code::Unknown),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trailer_statuses() {
        let s = status_from_trailers(&trailers(&[("grpc-status", "0")]));
        assert!(s.is_ok());
        let s = status_from_trailers(&trailers(&[("grpc-status", "x")]));
        assert_eq!(s.code(), Code::Unknown);
        let s = status_from_trailers(&trailers(&[("x-y", "1")]));
        assert_eq!(s.code(), Code::Unknown);
        let s = end_of_stream_status(Ok(None), false, false, 0);
        assert_eq!(s.code(), Code::Internal);
        let ok = || Ok(Some(trailers(&[("grpc-status", "0")])));
        assert!(end_of_stream_status(ok(), false, false, 0).is_ok());
        assert_eq!(
            end_of_stream_status(ok(), true, false, 1).code(),
            Code::Internal
        );
        assert_eq!(
            end_of_stream_status(ok(), false, true, 0).code(),
            Code::Unimplemented
        );
        assert!(end_of_stream_status(ok(), false, true, 1).is_ok());
        // Trailers-Only OK on a unary call: no response message.
        let only_ok = status_from_trailers(&trailers(&[("grpc-status", "0")]));
        assert_eq!(
            expect_response(only_ok.clone(), true, 0).code(),
            Code::Unimplemented
        );
        assert!(expect_response(only_ok, false, 0).is_ok());
        // A failed status is kept as it is, whatever the checks.
        let failed = Ok(Some(trailers(&[("grpc-status", "14")])));
        assert_eq!(
            end_of_stream_status(failed, true, true, 0).code(),
            Code::Unavailable
        );
    }

    #[test]
    fn decompression() {
        let z = Compression::Gzip.compress(&[7u8; 1000]);
        assert_eq!(decompress(Some("gzip"), &z, None).unwrap().len(), 1000);
        assert_eq!(
            decompress(Some("gzip"), &z, Some(10)).unwrap_err().code(),
            Code::ResourceExhausted
        );
        assert_eq!(
            decompress(None, &z, None).unwrap_err().code(),
            Code::Internal
        );
        assert_eq!(
            decompress(Some("snappy"), &z, None).unwrap_err().code(),
            Code::Internal
        );
        assert_eq!(
            decompress(Some("gzip"), b"not gzip", None)
                .unwrap_err()
                .code(),
            Code::Internal
        );
    }

    #[test]
    fn metadata_limits() {
        let l = MetadataLimits {
            soft: 1000,
            hard: 2000,
        };
        let h = trailers(&[("x-a", "1234567")]);
        assert_eq!(header_list_size(&h), 3 + 7 + 32);
        assert!(received_metadata_status(1000, l, 0.0).is_none());
        let st = received_metadata_status(2001, l, 0.99).unwrap();
        assert_eq!(st.code(), Code::ResourceExhausted);
        assert!(st
            .message()
            .contains("grpc.absolute_max_metadata_size (2000 bytes)"));
        // Halfway between the limits: refused when the roll is under 1/2.
        assert!(received_metadata_status(1500, l, 0.49).is_some());
        assert!(received_metadata_status(1500, l, 0.51).is_none());
        let big = trailers(&[("x-big", &"v".repeat(3000))]);
        assert_eq!(
            sent_metadata_status(&big, l).unwrap_err().code(),
            Code::ResourceExhausted
        );
        assert!(sent_metadata_status(&h, l).is_ok());
    }

    #[test]
    fn decode_errors() {
        let s = decode_error_status(DecodeError::TooLarge { len: 9, max: 4 });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.message().contains("9 vs. 4"));
        assert_eq!(
            decode_error_status(DecodeError::BadFlag(7)).code(),
            Code::Internal
        );
    }
}
