//! Compression: compressed requests (gzip, deflate) with `expect_compressed`
//! checked both ways, per-message compressed responses, the reflected
//! flags and headers, and the error cases. Wire-level checks use a bare h2
//! client (exact control of each message's flag and of the DATA frames);
//! the last tests use tonic's own client with compression enabled.

mod common;

use std::io::{Read, Write};

use bytes::{BufMut, Bytes, BytesMut};
use flate2::read::GzDecoder;
use flate2::write::{GzEncoder, ZlibEncoder};
use prost::Message;
use rgrpc_tonic_interop::pb::{
    BoolValue, Empty, Payload, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};
use rgrpc_tonic_interop::{ServerOptions, TestServer};
use tonic::codec::CompressionEncoding;
use tonic::Code;

const SERVICE: &str = "/grpc.testing.TestService/";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Enc {
    Plain,
    Gzip,
    Deflate,
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

/// One length-prefixed message with the given flag and bytes.
fn raw_frame(flag: u8, bytes: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + bytes.len());
    buf.put_u8(flag);
    buf.put_u32(bytes.len() as u32);
    buf.put_slice(bytes);
    buf.freeze()
}

/// `msg` framed, compressed with `enc` (flag set) or not.
fn frame(msg: &impl Message, enc: Enc) -> Bytes {
    let body = msg.encode_to_vec();
    match enc {
        Enc::Plain => raw_frame(0, &body),
        Enc::Gzip => raw_frame(1, &gzip(&body)),
        Enc::Deflate => raw_frame(1, &zlib(&body)),
    }
}

fn zeros(n: usize) -> Option<Payload> {
    Some(Payload {
        r#type: 0,
        body: vec![0; n],
    })
}

fn bool_value(value: bool) -> Option<BoolValue> {
    Some(BoolValue { value })
}

struct Reply {
    headers: http::HeaderMap,
    data: Vec<u8>,
    trailers: Option<http::HeaderMap>,
}

impl Reply {
    /// grpc-status and grpc-message, from the trailers or (trailers-only)
    /// the headers.
    fn status(&self) -> (String, String) {
        let map = self.trailers.as_ref().unwrap_or(&self.headers);
        (
            str_of(map, "grpc-status").unwrap_or("").to_string(),
            str_of(map, "grpc-message").unwrap_or("").to_string(),
        )
    }

    fn status_code(&self) -> String {
        self.status().0
    }

    /// Where trailing metadata is: the trailers, or the headers of a
    /// trailers-only response.
    fn trailing(&self) -> &http::HeaderMap {
        self.trailers.as_ref().unwrap_or(&self.headers)
    }

    /// The response messages: (compressed flag, bytes as on the wire).
    fn messages(&self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = &self.data[..];
        while !rest.is_empty() {
            assert!(rest.len() >= 5, "partial message header");
            let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            out.push((rest[0], rest[5..5 + len].to_vec()));
            rest = &rest[5 + len..];
        }
        out
    }

    /// The response messages decoded (inflating gzip ones), with their flags.
    fn decoded<M: Message + Default>(&self) -> Vec<(u8, M)> {
        self.messages()
            .into_iter()
            .map(|(flag, bytes)| {
                let plain = if flag == 1 { gunzip(&bytes) } else { bytes };
                (flag, M::decode(&plain[..]).unwrap())
            })
            .collect()
    }
}

fn str_of<'a>(map: &'a http::HeaderMap, key: &str) -> Option<&'a str> {
    map.get(key).map(|v| v.to_str().unwrap())
}

/// Calls `method` with the request headers `extra`, sending `chunks` as
/// DATA frames (one each), then reads the whole response.
async fn call_chunks(
    server: &TestServer,
    method: &str,
    extra: &[(&str, &str)],
    chunks: Vec<Bytes>,
) -> Reply {
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{SERVICE}{method}", server.target()))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let (resp, mut send) = client.send_request(req.body(()).unwrap(), false).unwrap();
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        send.send_data(chunk, i + 1 == n).unwrap();
    }
    if n == 0 {
        send.send_data(Bytes::new(), true).unwrap();
    }
    let resp = resp.await.unwrap();
    let (parts, mut body) = resp.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap();
    Reply {
        headers: parts.headers,
        data,
        trailers,
    }
}

/// Calls `method` sending the messages `frames` (each in one DATA frame).
async fn call(
    server: &TestServer,
    method: &str,
    extra: &[(&str, &str)],
    frames: &[Bytes],
) -> Reply {
    call_chunks(server, method, extra, frames.to_vec()).await
}

fn unary_request(expect: Option<bool>, response_compressed: Option<bool>) -> SimpleRequest {
    SimpleRequest {
        response_size: 314_159,
        payload: zeros(271_828),
        expect_compressed: expect.and_then(bool_value),
        response_compressed: response_compressed.and_then(bool_value),
        ..Default::default()
    }
}

fn input_request(size: usize, expect: Option<bool>) -> StreamingInputCallRequest {
    StreamingInputCallRequest {
        payload: zeros(size),
        expect_compressed: expect.and_then(bool_value),
    }
}

const ECHO_FLAGS: (&str, &str) = ("x-rgrpc-echo-compression", "1");
const FLAGS: &str = "x-rgrpc-req-compressed-flags";

#[tokio::test]
async fn compressed_unary_requests_are_accepted_and_flagged() {
    let server = TestServer::start();
    for (enc, name) in [(Enc::Gzip, "gzip"), (Enc::Deflate, "deflate")] {
        for expect in [Some(true), None] {
            let reply = call(
                &server,
                "UnaryCall",
                &[("grpc-encoding", name), ECHO_FLAGS],
                &[frame(&unary_request(expect, None), enc)],
            )
            .await;
            assert_eq!(
                reply.status_code(),
                "0",
                "{name} {expect:?}: {:?}",
                reply.status()
            );
            let msgs = reply.decoded::<SimpleResponse>();
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].0, 0, "response not compressed");
            assert_eq!(msgs[0].1.payload.as_ref().unwrap().body.len(), 314_159);
            assert_eq!(str_of(reply.trailing(), FLAGS), Some("1"));
            assert!(reply.headers.get("grpc-encoding").is_none());
        }
    }
}

#[tokio::test]
async fn expect_compressed_is_checked_both_ways() {
    let server = TestServer::start();
    // (message encoding, expect_compressed, OK?)
    for (enc, expect, ok) in [
        (Enc::Plain, Some(true), false),
        (Enc::Plain, Some(false), true),
        (Enc::Plain, None, true),
        (Enc::Gzip, Some(true), true),
        (Enc::Gzip, Some(false), false),
        (Enc::Deflate, Some(false), false),
    ] {
        let encoding = if enc == Enc::Deflate {
            "deflate"
        } else {
            "gzip"
        };
        let reply = call(
            &server,
            "UnaryCall",
            &[("grpc-encoding", encoding), ECHO_FLAGS],
            &[frame(&unary_request(expect, None), enc)],
        )
        .await;
        let want = if ok { "0" } else { "3" };
        assert_eq!(
            reply.status_code(),
            want,
            "{enc:?} {expect:?}: {:?}",
            reply.status()
        );
        // The flags are reported on errors too (trailers-only: in the headers).
        let flag = if enc == Enc::Plain { "0" } else { "1" };
        assert_eq!(str_of(reply.trailing(), FLAGS), Some(flag));
    }
}

#[tokio::test]
async fn client_compressed_streaming_per_message() {
    let server = TestServer::start();
    // The interop case: a compressed 27182 (expect true), then an
    // uncompressed 45904 (expect false), in one gzip call.
    let reply = call(
        &server,
        "StreamingInputCall",
        &[("grpc-encoding", "gzip"), ECHO_FLAGS],
        &[
            frame(&input_request(27_182, Some(true)), Enc::Gzip),
            frame(&input_request(45_904, Some(false)), Enc::Plain),
        ],
    )
    .await;
    assert_eq!(reply.status_code(), "0", "{:?}", reply.status());
    let msgs = reply.decoded::<StreamingInputCallResponse>();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].1.aggregated_payload_size, 73_086);
    assert_eq!(str_of(reply.trailing(), FLAGS), Some("1,0"));

    // The probe: uncompressed with expect true fails.
    let reply = call(
        &server,
        "StreamingInputCall",
        &[],
        &[frame(&input_request(27_182, Some(true)), Enc::Plain)],
    )
    .await;
    assert_eq!(reply.status_code(), "3");

    // Compressed second message that expects not to be.
    let reply = call(
        &server,
        "StreamingInputCall",
        &[("grpc-encoding", "deflate"), ECHO_FLAGS],
        &[
            frame(&input_request(10, Some(false)), Enc::Plain),
            frame(&input_request(10, Some(false)), Enc::Deflate),
        ],
    )
    .await;
    assert_eq!(reply.status_code(), "3", "{:?}", reply.status());
    assert_eq!(str_of(reply.trailing(), FLAGS), Some("0,1"));
}

/// A client stream of alternately gzip-compressed (expect true) and plain
/// (expect false) messages of these payload sizes, each followed by an
/// empty message; and the flags the server should see.
fn mixed_stream(sizes: &[usize]) -> (Bytes, String) {
    let mut all = BytesMut::new();
    let mut flags = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let enc = if i % 2 == 0 { Enc::Gzip } else { Enc::Plain };
        all.extend_from_slice(&frame(&input_request(*size, Some(enc == Enc::Gzip)), enc));
        all.extend_from_slice(&raw_frame(0, &[]));
        flags.push(if enc == Enc::Gzip { "1,0" } else { "0,0" });
    }
    (all.freeze(), flags.join(","))
}

#[tokio::test]
async fn messages_split_across_data_frames() {
    let server = TestServer::start();
    // Small DATA frames only for a short stream: h2 (0.4.20+) closes
    // connections that send too many small frames.
    let small = [0usize, 10, 1, 20, 5];
    let large = [0usize, 3000, 1, 70_000, 5];
    for (sizes, chunk) in [
        (&small, 2usize),
        (&small, 3),
        (&small, 7),
        (&large, 300),
        (&large, 4096),
    ] {
        let (all, flags) = mixed_stream(sizes);
        let chunks: Vec<Bytes> = all.chunks(chunk).map(Bytes::copy_from_slice).collect();
        let reply = call_chunks(
            &server,
            "StreamingInputCall",
            &[("grpc-encoding", "gzip"), ECHO_FLAGS],
            chunks,
        )
        .await;
        assert_eq!(
            reply.status_code(),
            "0",
            "chunk {chunk}: {:?}",
            reply.status()
        );
        let msgs = reply.decoded::<StreamingInputCallResponse>();
        let total: usize = sizes.iter().sum();
        assert_eq!(msgs[0].1.aggregated_payload_size as usize, total);
        assert_eq!(
            str_of(reply.trailing(), FLAGS),
            Some(&flags[..]),
            "chunk {chunk}"
        );
    }
}

#[tokio::test]
async fn echo_flags_with_no_request_message() {
    let server = TestServer::start();
    let reply = call(&server, "FullDuplexCall", &[ECHO_FLAGS], &[]).await;
    assert_eq!(reply.status_code(), "0");
    assert_eq!(str_of(reply.trailing(), FLAGS), Some(""));
    // Not asked for: absent.
    let reply = call(&server, "EmptyCall", &[], &[frame(&Empty {}, Enc::Gzip)]).await;
    // ... and a compressed message without grpc-encoding is INTERNAL.
    assert_eq!(reply.status_code(), "13", "{:?}", reply.status());
    assert!(reply.trailing().get(FLAGS).is_none());
}

#[tokio::test]
async fn server_compressed_unary() {
    let server = TestServer::start();
    let accept = ("grpc-accept-encoding", "identity,deflate,gzip");
    let reply = call(
        &server,
        "UnaryCall",
        &[accept],
        &[frame(&unary_request(None, Some(true)), Enc::Plain)],
    )
    .await;
    assert_eq!(reply.status_code(), "0");
    assert_eq!(str_of(&reply.headers, "grpc-encoding"), Some("gzip"));
    let msgs = reply.decoded::<SimpleResponse>();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0, 1, "compressed flag");
    assert!(reply.messages()[0].1.len() < 10_000, "really compressed");
    let body = &msgs[0].1.payload.as_ref().unwrap().body;
    assert_eq!(body.len(), 314_159);
    assert!(body.iter().all(|b| *b == 0));

    // response_compressed false: no grpc-encoding, flag clear.
    let reply = call(
        &server,
        "UnaryCall",
        &[accept],
        &[frame(&unary_request(None, Some(false)), Enc::Plain)],
    )
    .await;
    assert_eq!(reply.status_code(), "0");
    assert!(reply.headers.get("grpc-encoding").is_none());
    let msgs = reply.decoded::<SimpleResponse>();
    assert_eq!(msgs[0].0, 0);
    assert_eq!(msgs[0].1.payload.as_ref().unwrap().body.len(), 314_159);

    // A client that does not accept gzip gets it uncompressed.
    for accepts in [None, Some("identity,deflate"), Some("gzipx")] {
        let mut extra = vec![];
        if let Some(a) = accepts {
            extra.push(("grpc-accept-encoding", a));
        }
        let reply = call(
            &server,
            "UnaryCall",
            &extra,
            &[frame(&unary_request(None, Some(true)), Enc::Plain)],
        )
        .await;
        assert_eq!(reply.status_code(), "0");
        assert!(reply.headers.get("grpc-encoding").is_none(), "{accepts:?}");
        assert_eq!(reply.messages()[0].0, 0, "{accepts:?}");
    }

    // Compressed request and compressed response together.
    let reply = call(
        &server,
        "UnaryCall",
        &[("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")],
        &[frame(&unary_request(Some(true), Some(true)), Enc::Gzip)],
    )
    .await;
    assert_eq!(reply.status_code(), "0");
    assert_eq!(reply.messages()[0].0, 1);
}

#[tokio::test]
async fn server_compressed_streaming_per_message() {
    let server = TestServer::start();
    let params = |spec: &[(i32, Option<bool>)]| StreamingOutputCallRequest {
        response_parameters: spec
            .iter()
            .map(|(size, compressed)| ResponseParameters {
                size: *size,
                interval_us: 0,
                compressed: compressed.and_then(bool_value),
            })
            .collect(),
        ..Default::default()
    };
    // The interop case, then a longer mix.
    for spec in [
        vec![(31_415, Some(true)), (92_653, Some(false))],
        vec![
            (0, Some(true)),
            (9, None),
            (100_000, Some(true)),
            (2653, Some(false)),
            (58_979, Some(true)),
        ],
    ] {
        let reply = call(
            &server,
            "StreamingOutputCall",
            &[("grpc-accept-encoding", "gzip")],
            &[frame(&params(&spec), Enc::Plain)],
        )
        .await;
        assert_eq!(reply.status_code(), "0", "{:?}", reply.status());
        assert_eq!(str_of(&reply.headers, "grpc-encoding"), Some("gzip"));
        let msgs = reply.decoded::<StreamingOutputCallResponse>();
        assert_eq!(msgs.len(), spec.len());
        for ((flag, msg), (size, compressed)) in msgs.iter().zip(&spec) {
            assert_eq!(*flag, u8::from(*compressed == Some(true)), "{spec:?}");
            assert_eq!(msg.payload.as_ref().unwrap().body.len(), *size as usize);
        }
    }
    // Nothing asks for compression: no grpc-encoding.
    let reply = call(
        &server,
        "StreamingOutputCall",
        &[("grpc-accept-encoding", "gzip")],
        &[frame(&params(&[(10, Some(false)), (20, None)]), Enc::Plain)],
    )
    .await;
    assert_eq!(reply.status_code(), "0");
    assert!(reply.headers.get("grpc-encoding").is_none());
    assert!(reply.messages().iter().all(|(flag, _)| *flag == 0));
}

#[tokio::test]
async fn reflects_encoding_headers() {
    let server = TestServer::start();
    let reply = call(
        &server,
        "EmptyCall",
        &[
            ("x-rgrpc-echo-request-headers", "1"),
            ("grpc-encoding", "deflate"),
            ("grpc-accept-encoding", "identity,deflate,gzip"),
        ],
        &[frame(&Empty {}, Enc::Deflate)],
    )
    .await;
    assert_eq!(reply.status_code(), "0");
    let h = &reply.headers;
    assert_eq!(str_of(h, "x-rgrpc-req-grpc-encoding"), Some("deflate"));
    assert_eq!(
        str_of(h, "x-rgrpc-req-grpc-accept-encoding"),
        Some("identity,deflate,gzip")
    );
    assert_eq!(str_of(h, "grpc-accept-encoding"), Some("gzip,deflate"));
    // Absent when not sent.
    let reply = call(
        &server,
        "EmptyCall",
        &[("x-rgrpc-echo-request-headers", "1")],
        &[frame(&Empty {}, Enc::Plain)],
    )
    .await;
    assert!(reply.headers.get("x-rgrpc-req-grpc-encoding").is_none());
    assert!(reply
        .headers
        .get("x-rgrpc-req-grpc-accept-encoding")
        .is_none());
}

#[tokio::test]
async fn bad_compressed_requests() {
    let server = TestServer::start_with(ServerOptions {
        max_decoding_message_size: Some(1 << 20),
        ..Default::default()
    });
    // Unsupported encoding: UNIMPLEMENTED, saying what is accepted.
    let reply = call(
        &server,
        "EmptyCall",
        &[("grpc-encoding", "snappy")],
        &[frame(&Empty {}, Enc::Plain)],
    )
    .await;
    assert_eq!(reply.status_code(), "12", "{:?}", reply.status());
    assert_eq!(
        str_of(&reply.headers, "grpc-accept-encoding"),
        Some("gzip,deflate")
    );

    // Corrupt data: INTERNAL.
    for (name, data) in [
        ("gzip", b"not gzip at all".to_vec()),
        ("deflate", b"not zlib".to_vec()),
        ("gzip", gzip(&[1; 100])[..20].to_vec()),
    ] {
        let reply = call(
            &server,
            "UnaryCall",
            &[("grpc-encoding", name)],
            &[raw_frame(1, &data)],
        )
        .await;
        assert_eq!(reply.status_code(), "13", "{name}: {:?}", reply.status());
    }

    // Inflates past the limit (a 2 MiB bomb in ~2 KiB): OUT_OF_RANGE, like
    // an uncompressed message over the limit.
    let bomb = SimpleRequest {
        payload: zeros(2 << 20),
        ..Default::default()
    };
    let framed = frame(&bomb, Enc::Gzip);
    assert!(framed.len() < 10_000);
    let reply = call(
        &server,
        "UnaryCall",
        &[("grpc-encoding", "gzip")],
        &[framed],
    )
    .await;
    assert_eq!(reply.status_code(), "11", "{:?}", reply.status());
    // Just under the limit is fine.
    let ok = SimpleRequest {
        payload: zeros((1 << 20) - 100),
        ..Default::default()
    };
    let reply = call(
        &server,
        "UnaryCall",
        &[("grpc-encoding", "gzip")],
        &[frame(&ok, Enc::Gzip)],
    )
    .await;
    assert_eq!(reply.status_code(), "0", "{:?}", reply.status());

    // A truncated compressed message: INTERNAL, as tonic reports a
    // truncated one.
    let whole = frame(&Empty {}, Enc::Gzip);
    let reply = call(
        &server,
        "UnaryCall",
        &[("grpc-encoding", "gzip")],
        &[whole.slice(..whole.len() - 2)],
    )
    .await;
    assert_eq!(reply.status_code(), "13", "{:?}", reply.status());
}

#[tokio::test]
async fn tonic_client_with_gzip_both_ways() {
    let server = TestServer::start();
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Deflate] {
        let mut client = common::connect(&server)
            .await
            .send_compressed(encoding)
            .accept_compressed(CompressionEncoding::Gzip);
        let resp = client
            .unary_call(unary_request(Some(true), Some(true)))
            .await
            .unwrap();
        assert_eq!(
            resp.metadata()
                .get("grpc-encoding")
                .map(|v| v.to_str().unwrap()),
            Some("gzip")
        );
        assert_eq!(resp.into_inner().payload.unwrap().body.len(), 314_159);

        // Every message tonic sends is compressed: expect false fails.
        let err = client
            .unary_call(unary_request(Some(false), None))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);

        let input = tokio_stream::iter(vec![
            input_request(27_182, Some(true)),
            input_request(45_904, Some(true)),
        ]);
        let resp = client.streaming_input_call(input).await.unwrap();
        assert_eq!(resp.into_inner().aggregated_payload_size, 73_086);
    }

    // A plain tonic client: no compression either way.
    let mut client = common::connect(&server).await;
    let resp = client
        .unary_call(unary_request(Some(false), Some(true)))
        .await
        .unwrap();
    assert!(resp.metadata().get("grpc-encoding").is_none());
    let err = client
        .unary_call(unary_request(Some(true), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
