//! Wire-level checks with a bare h2 client (no client-side deadline
//! enforcement, exact control of the request headers).

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use rgrpc_tonic_interop::pb::{
    Empty, SimpleRequest, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use rgrpc_tonic_interop::TestServer;

fn frame(msg: &impl Message) -> Bytes {
    let body = msg.encode_to_vec();
    let mut buf = BytesMut::with_capacity(5 + body.len());
    buf.put_u8(0);
    buf.put_u32(body.len() as u32);
    buf.put_slice(&body);
    buf.freeze()
}

struct Reply {
    headers: http::HeaderMap,
    data: Vec<u8>,
    trailers: Option<http::HeaderMap>,
}

async fn call(
    server: &TestServer,
    authority: Option<&str>,
    path: &str,
    extra: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let authority = authority.map_or_else(|| server.target(), str::to_string);
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let (resp, mut send) = client.send_request(req.body(()).unwrap(), false).unwrap();
    send.send_data(body, true).unwrap();
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

fn str_of<'a>(map: &'a http::HeaderMap, key: &str) -> Option<&'a str> {
    map.get(key).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn deadline_before_headers_is_trailers_only_deadline_exceeded() {
    let server = TestServer::start();
    let start = Instant::now();
    let reply = call(
        &server,
        None,
        "/grpc.testing.TestService/EmptyCall",
        &[
            ("grpc-timeout", "200m"),
            ("x-rgrpc-sleep-ms", "3000"),
            ("x-grpc-test-echo-trailing-ascii", "t"),
        ],
        frame(&Empty {}),
    )
    .await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(195), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    assert_eq!(str_of(&reply.headers, "grpc-status"), Some("4"));
    // tonic percent-encodes the space too (legal: decoders decode any %XX).
    assert_eq!(
        str_of(&reply.headers, "grpc-message"),
        Some("Deadline%20Exceeded")
    );
    assert_eq!(
        str_of(&reply.headers, "x-grpc-test-echo-trailing-ascii"),
        Some("t")
    );
    assert!(reply.data.is_empty());
    assert!(reply.trailers.is_none());
}

#[tokio::test]
async fn deadline_mid_stream_ends_with_deadline_exceeded_trailers() {
    let server = TestServer::start();
    let req = StreamingOutputCallRequest {
        response_parameters: (0..20)
            .map(|_| rgrpc_tonic_interop::pb::ResponseParameters {
                size: 10,
                interval_us: 100_000,
                compressed: None,
            })
            .collect(),
        ..Default::default()
    };
    let start = Instant::now();
    let reply = call(
        &server,
        None,
        "/grpc.testing.TestService/StreamingOutputCall",
        &[("grpc-timeout", "350m")],
        frame(&req),
    )
    .await;
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(str_of(&reply.headers, ":status"), None);
    assert!(str_of(&reply.headers, "grpc-status").is_none());
    let trailers = reply.trailers.expect("trailers");
    assert_eq!(str_of(&trailers, "grpc-status"), Some("4"));
    // About three 10-byte messages (5-byte prefix + 12-byte message each).
    let one = frame(&StreamingOutputCallResponse {
        payload: Some(rgrpc_tonic_interop::pb::Payload {
            r#type: 0,
            body: vec![0; 10],
        }),
    })
    .len();
    let n = reply.data.len() / one;
    assert_eq!(reply.data.len() % one, 0);
    assert!((1..=4).contains(&n), "{n} messages");
}

#[tokio::test]
async fn ok_unary_has_headers_data_trailers() {
    let server = TestServer::start();
    let reply = call(
        &server,
        None,
        "/grpc.testing.TestService/UnaryCall",
        &[
            ("grpc-timeout", "10S"),
            ("x-grpc-test-echo-initial", "i"),
            ("x-grpc-test-echo-trailing-bin", "AAEC"),
        ],
        frame(&SimpleRequest {
            response_size: 3,
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        str_of(&reply.headers, "content-type"),
        Some("application/grpc")
    );
    assert_eq!(
        str_of(&reply.headers, "x-grpc-test-echo-initial"),
        Some("i")
    );
    assert!(reply.headers.get("x-grpc-test-echo-trailing-bin").is_none());
    assert!(!reply.data.is_empty());
    let trailers = reply.trailers.expect("trailers");
    assert_eq!(str_of(&trailers, "grpc-status"), Some("0"));
    assert_eq!(
        str_of(&trailers, "x-grpc-test-echo-trailing-bin"),
        Some("AAEC")
    );
}

#[tokio::test]
async fn reflects_authority_as_sent() {
    let server = TestServer::start();
    let reply = call(
        &server,
        Some("example.test:8443"),
        "/grpc.testing.TestService/EmptyCall",
        &[
            ("x-rgrpc-echo-request-headers", "1"),
            ("user-agent", "raw-h2-test/1.0"),
        ],
        frame(&Empty {}),
    )
    .await;
    let h = &reply.headers;
    assert_eq!(
        str_of(h, "x-rgrpc-req-authority"),
        Some("example.test:8443")
    );
    assert_eq!(str_of(h, "x-rgrpc-req-user-agent"), Some("raw-h2-test/1.0"));
    assert_eq!(
        str_of(h, "x-rgrpc-req-path"),
        Some("/grpc.testing.TestService/EmptyCall")
    );
    assert_eq!(
        str_of(h, "x-rgrpc-req-header-order"),
        Some("content-type,te,x-rgrpc-echo-request-headers,user-agent")
    );
    assert!(h.get("x-rgrpc-req-grpc-timeout").is_none());
}
