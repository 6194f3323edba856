//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not
//! part of the API). One function per parser that reads peer input or user
//! configuration; each takes arbitrary bytes and must never panic. Where a
//! parser has an inverse, the function also checks the round trip and
//! panics on a mismatch, so the fuzzer reports it as a crash.

#![forbid(unsafe_code)]

use crate::call::protocol;
use crate::channel::options::{ChannelOptions, OptionValue, KEYS};
use crate::channel::proxy;
use crate::channel::service_config::{self, ServiceConfig};
use crate::channel::target;
use crate::channel::MetadataLimits;
use crate::codec::compression::Compression;
use crate::codec::framing::{self, Decoder};
use crate::codec::{percent, timeout};
use crate::metadata::{self, Metadata};
use crate::status::Code;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;

/// Reads fuzzer bytes as choices: a byte at a time, then the rest.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// A header block from `name: value` lines (names and values the `http`
/// crate refuses are left out, as h2 would refuse them on the wire).
fn header_map(text: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in text.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            h.append(n, v);
        }
    }
    h
}

/// The message framing decoder. Input: a byte choosing the receive limit,
/// a byte choosing the chunk size, then the received bytes. Checks that
/// the decoded payloads and the bytes still buffered account for no more
/// than what was pushed.
pub fn framing(data: &[u8]) {
    let mut input = Input(data);
    let max = match input.byte() % 4 {
        0 => None,
        1 => Some(0),
        2 => Some(64),
        _ => Some(4 << 20),
    };
    let chunk = usize::from(input.byte()).max(1);
    let wire = input.rest();
    let mut d = Decoder::new(max);
    let mut decoded = 0;
    'outer: for c in wire.chunks(chunk) {
        d.push(c);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    if let Some(m) = max {
                        assert!(f.data.len() <= m, "a frame over the limit was returned");
                    }
                    decoded += framing::HEADER_LEN + f.data.len();
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    assert!(decoded <= wire.len(), "decoded more bytes than were pushed");
    let _ = d.has_partial();
}

/// Decompression of a received message with the response's encoding and
/// a receive limit. Input: a byte choosing the encoding, a byte choosing
/// the limit, then the message. Also checks that compressing the message
/// with that encoding and decompressing it again gives it back.
pub fn decompress(data: &[u8]) {
    let mut input = Input(data);
    let encoding = match input.byte() % 5 {
        0 => None,
        1 => Some("identity"),
        2 => Some("deflate"),
        3 => Some("gzip"),
        _ => Some("br"),
    };
    let limit = match input.byte() % 4 {
        0 => None,
        1 => Some(0),
        2 => Some(100),
        _ => Some(64 << 10),
    };
    let msg = input.rest();
    if let Ok(out) = protocol::decompress(encoding, msg, limit) {
        if let Some(l) = limit {
            assert!(out.len() <= l, "decompressed past the limit");
        }
    }
    if let Some(alg) = encoding.and_then(Compression::from_name) {
        let packed = alg.compress(msg);
        let back = alg.decompress(&packed, None).expect("our own compression");
        assert_eq!(back, msg, "{alg:?} round trip");
    }
}

/// `grpc-status`, `grpc-message` (percent-decoding) and `grpc-timeout`.
/// Checks that percent-encoding the decoded text decodes to it again, and
/// that a decoded timeout, encoded again, is no shorter.
pub fn status(data: &[u8]) {
    let _ = Code::parse_header(data);
    let mut input = Input(data);
    let _ = Code::from_http_status(input.u16());
    let text = percent::decode(data);
    assert_eq!(percent::decode(percent::encode(&text).as_bytes()), text);
    let _ = crate::status::with_nul(&text);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(d) = timeout::decode(s) {
            let again = timeout::decode(&timeout::encode(d)).expect("our own encoding");
            assert!(
                again >= d,
                "grpc-timeout {s:?}: {d:?} re-encoded as {again:?}"
            );
        }
    }
}

/// Metadata: key and value validation, and received headers to metadata
/// (`-bin` base64 decoding). Input: a key, a NUL, a value, a NUL, then a
/// header block as `name: value` lines. Checks that a valid entry sent as
/// headers is received as the same entry.
pub fn metadata(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let key = parts.next().unwrap_or(b"");
    let value = parts.next().unwrap_or(b"");
    let block = parts.next().unwrap_or(b"");
    let key = String::from_utf8_lossy(key);
    let _ = metadata::validate_value(&key, value);
    let mut md = Metadata::new();
    if md.add(&key, value).is_ok() && key != metadata::USER_AGENT {
        let mut h = HeaderMap::new();
        md.append_to_headers(&mut h)
            .expect("a validated entry is a valid header");
        let back = Metadata::from_headers(&h);
        assert_eq!(back, md, "metadata round trip");
    }
    let received = Metadata::from_headers(&header_map(block));
    for (k, v) in received.iter() {
        let _ = (received.find(k), v.len());
    }
}

/// Response header blocks and trailers to a status. Input: two bytes of
/// HTTP status, a flag byte (bit 0: the block ended the stream; bit 1:
/// the stream ended inside a message), then the block as `name: value`
/// lines.
pub fn response(data: &[u8]) {
    let mut input = Input(data);
    let http_status = input.u16() % 1000;
    let flags = input.byte();
    let h = header_map(input.rest());
    let _ = protocol::http_status_to_status(http_status, &h);
    let status = protocol::status_from_trailers(&h);
    let _ = status.message_with_nul();
    let _ = protocol::end_of_stream_status(Ok(Some(h.clone())), flags & 2 != 0, true, 0);
    let size = protocol::header_list_size(&h);
    let limits = MetadataLimits {
        soft: 64,
        hard: 128,
    };
    let _ = protocol::received_metadata_status(size, limits, 0.5);
    let Ok(code) = http::StatusCode::from_u16(http_status.max(100)) else {
        return;
    };
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = code;
    parts.headers = h;
    match protocol::response_head(&parts, flags & 1 != 0) {
        protocol::ResponseHead::Ok { encoding, .. } => {
            let _ = protocol::decompress(encoding.as_deref(), b"", Some(16));
        }
        protocol::ResponseHead::TrailersOnly(s) | protocol::ResponseHead::Fail(s) => {
            let _ = s.message_with_nul();
        }
    }
}

/// Target strings.
pub fn target(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = target::parse(s) {
        assert!(!t.addresses.is_empty(), "target {s:?} parsed to no address");
    }
}

/// Channel options. Input: records of a key byte (an index into the
/// option table, or 255 for a key given as text), a type byte, and the
/// value up to the next NUL (an integer is its text in decimal).
pub fn options(data: &[u8]) {
    let mut opts = ChannelOptions::default();
    let mut records = data.split(|b| *b == 0);
    while let Some(rec) = records.next() {
        let mut input = Input(rec);
        let k = input.byte();
        let kind = input.byte();
        let raw = input.rest();
        let owned;
        let key = if usize::from(k) < KEYS.len() {
            KEYS[usize::from(k)].name
        } else {
            owned = String::from_utf8_lossy(records.next().unwrap_or(b"")).into_owned();
            owned.as_str()
        };
        let text = String::from_utf8_lossy(raw).into_owned();
        let value = if kind % 2 == 0 {
            OptionValue::Int(text.trim().parse().unwrap_or(i64::from(kind)))
        } else {
            OptionValue::Str(text)
        };
        let _ = opts.set(key, value);
    }
    let limits = opts.metadata_limits();
    assert!(limits.soft <= limits.hard, "metadata limits {limits:?}");
}

/// The service config JSON, and a method lookup in the parsed config.
/// Input: the JSON (a NUL, then a method path, optionally).
pub fn service_config(data: &[u8]) {
    let mut parts = data.splitn(2, |b| *b == 0);
    let json = String::from_utf8_lossy(parts.next().unwrap_or(b""));
    let path = String::from_utf8_lossy(parts.next().unwrap_or(b"/s/m"));
    let _ = service_config::parse_duration(&json);
    if let Ok(c) = ServiceConfig::parse(&json, &["pick_first", "round_robin"]) {
        let _ = c.lb_policy();
        let _ = c.retry_throttling();
        let _ = c.method(&path);
    }
}

/// The proxy choice from options and environment, and the proxy's answer
/// to CONNECT. Input: NUL-separated fields: the target, the option
/// `grpc.http_proxy` (an empty field: not set), `grpc_proxy`,
/// `https_proxy`, `http_proxy`, `no_grpc_proxy`, `no_proxy` (an empty
/// field: unset; a field of one `-`: set and empty), then the proxy's
/// answer bytes.
pub fn proxy_env(data: &[u8]) {
    let mut f = data.splitn(9, |b| *b == 0);
    let mut next = || String::from_utf8_lossy(f.next().unwrap_or(b"")).into_owned();
    let target = next();
    let option = Some(next()).filter(|s| !s.is_empty());
    let mut env = HashMap::new();
    for k in [
        "grpc_proxy",
        "https_proxy",
        "http_proxy",
        "no_grpc_proxy",
        "no_proxy",
    ] {
        match next().as_str() {
            "" => {}
            "-" => {
                env.insert(k, String::new());
            }
            v => {
                env.insert(k, v.to_string());
            }
        }
    }
    let answer = f.next().unwrap_or(b"");
    let env = |k: &str| env.get(k).cloned();
    let _ = proxy::parse_url(option.as_deref().unwrap_or(&target));
    let _ = proxy::choose(&target, option.as_deref(), true, &env);
    if let Ok(t) = target::parse(&target) {
        let mut opts = ChannelOptions::default();
        if let Some(o) = option {
            let _ = opts.set("grpc.http_proxy", OptionValue::Str(o));
        }
        let _ = proxy::route(t, &opts, &env);
    }
    // The answer to CONNECT: a reader that is always ready, so one poll
    // ends the future.
    let mut io = tokio::io::join(answer, tokio::io::sink());
    let fut = proxy::tunnel(&mut io, "server.example:443", Some("Basic dTpw"));
    let done = futures_util::FutureExt::now_or_never(fut);
    assert!(
        done.is_some(),
        "the CONNECT answer parser waited on ready input"
    );
}

/// A whole client against an in-process HTTP/2 peer that answers with
/// fuzzer-chosen bytes. Input: a flag byte (bit 0: the peer keeps the
/// connection open after its last segment instead of closing it), then
/// segments, each a 2-byte big-endian length and that many bytes. The peer
/// reads the client's preface, writes the first segment, waits for the
/// client's request HEADERS (at most 20 ms), then writes the rest. (The
/// client's connection becomes READY when its first PING is answered: the
/// seeds' first segment holds SETTINGS, a SETTINGS ACK and that PING's ACK
/// with h2's fixed payload.) The
/// client makes one unary call with a 50 ms deadline. Checks only that the
/// call ends (within 5 s) without a panic.
pub fn client(data: &[u8]) {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut input = Input(data);
    let keep_open = input.byte() & 1 != 0;
    let mut segments = Vec::new();
    let mut rest = input.rest();
    while !rest.is_empty() {
        let mut i = Input(rest);
        let len = usize::from(i.u16());
        let body = i.rest();
        let (seg, after) = body.split_at(len.min(body.len()));
        segments.push(seg.to_vec());
        rest = after;
    }

    let handle = crate::rt::handle().expect("runtime");
    let listener = {
        let _g = handle.enter();
        let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std.set_nonblocking(true).expect("nonblocking");
        tokio::net::TcpListener::from_std(std).expect("listener")
    };
    let port = listener.local_addr().expect("addr").port();
    let peer = handle.spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        drop(listener);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // The client's preface (24 bytes), then its frames; `headers` says
        // when a HEADERS frame (type 1) has been seen.
        let mut headers = false;
        let mut parsed = 24;
        let mut read_some = async |s: &mut tokio::net::TcpStream,
                                   got: &mut Vec<u8>,
                                   headers: &mut bool,
                                   parsed: &mut usize|
               -> bool {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => false,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    while got.len() >= *parsed + 9 {
                        let h = &got[*parsed..*parsed + 9];
                        let len =
                            usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                        *headers |= h[3] == 1;
                        *parsed += 9 + len;
                    }
                    true
                }
            }
        };
        while got.len() < 24 {
            if !read_some(&mut s, &mut got, &mut headers, &mut parsed).await {
                return;
            }
        }
        for (i, seg) in segments.iter().enumerate() {
            if i == 1 {
                let wait = async {
                    while !headers {
                        if !read_some(&mut s, &mut got, &mut headers, &mut parsed).await {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_millis(20), wait).await;
            }
            if s.write_all(seg).await.is_err() {
                return;
            }
        }
        if keep_open {
            // Until the client hangs up (its deadline, or the channel's close).
            while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        } else {
            let _ = s.shutdown().await;
        }
    });

    let channel = crate::Channel::new(&format!("ipv4:127.0.0.1:{port}"), ChannelOptions::default())
        .expect("channel");
    let opts = crate::CallOptions::default().with_timeout(Duration::from_millis(50));
    let call = channel.unary("/fuzz.Service/Method", opts, b"\x08\x01");
    let ended =
        crate::rt::block_on(async { tokio::time::timeout(Duration::from_secs(5), call).await })
            .expect("block_on");
    assert!(
        ended.is_ok(),
        "the call did not end within 5 s of a 50 ms deadline"
    );
    channel.close();
    peer.abort();
}
