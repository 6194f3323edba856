//! TestService behaviour, checked with tonic's own generated client.

mod common;

use std::time::{Duration, Instant};

use common::{connect, params, zero_payload};
use rgrpc_tonic_interop::pb::unimplemented_service_client::UnimplementedServiceClient;
use rgrpc_tonic_interop::pb::{
    BoolValue, EchoStatus, Empty, PayloadType, SimpleRequest, StreamingInputCallRequest,
    StreamingOutputCallRequest,
};
use rgrpc_tonic_interop::{ServerOptions, TestServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request};

const SPECIAL_MESSAGE: &str =
    "\t\ntest with whitespace\r\nand Unicode BMP \u{263A} and non-BMP \u{1F608}\t\n";

fn echo_status(code: i32, message: &str) -> Option<EchoStatus> {
    Some(EchoStatus {
        code,
        message: message.to_string(),
    })
}

#[tokio::test]
async fn empty_call() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let resp = client.empty_call(Empty {}).await.unwrap();
    assert_eq!(resp.into_inner(), Empty {});
}

#[tokio::test]
async fn unary_response_sizes() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    for size in [0usize, 1, 314_159, 1 << 20] {
        let resp = client
            .unary_call(SimpleRequest {
                response_size: size as i32,
                payload: zero_payload(271_828),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let payload = resp.payload.expect("payload");
        assert_eq!(payload.r#type, PayloadType::Compressable as i32);
        assert_eq!(payload.body.len(), size);
        assert!(payload.body.iter().all(|b| *b == 0));
    }
    // CacheableUnaryCall behaves the same.
    let resp = client
        .cacheable_unary_call(SimpleRequest {
            response_size: 7,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.payload.unwrap().body.len(), 7);
}

#[tokio::test]
async fn unary_status_echo_verbatim() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    for (code, message) in [
        (2, "test status message"),
        (2, SPECIAL_MESSAGE),
        (14, "unavailable % 100%"),
    ] {
        let err = client
            .unary_call(SimpleRequest {
                response_size: 10,
                response_status: echo_status(code, message),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::from_i32(code));
        assert_eq!(err.message(), message);
    }
    // A zero code is OK.
    client
        .unary_call(SimpleRequest {
            response_status: echo_status(0, "ignored"),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn expect_compressed_is_rejected() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let err = client
        .unary_call(SimpleRequest {
            response_size: 10,
            expect_compressed: Some(BoolValue { value: true }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // expect_compressed = false, response_compressed = true: fine, and
    // uncompressed, as this client does not accept gzip (tests/compression.rs
    // has the compressed cases).
    let resp = client
        .unary_call(SimpleRequest {
            response_size: 10,
            expect_compressed: Some(BoolValue { value: false }),
            response_compressed: Some(BoolValue { value: true }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(resp.metadata().get("grpc-encoding").is_none());

    let err = client
        .streaming_input_call(tokio_stream::iter(vec![StreamingInputCallRequest {
            payload: zero_payload(10),
            expect_compressed: Some(BoolValue { value: true }),
        }]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

fn add_echo_metadata(md: &mut MetadataMap) {
    md.insert(
        "x-grpc-test-echo-initial",
        "test_initial_metadata_value".parse().unwrap(),
    );
    md.append(
        "x-grpc-test-echo-initial",
        "second value, same key".parse().unwrap(),
    );
    md.insert_bin(
        "x-grpc-test-echo-initial-bin",
        MetadataValue::from_bytes(b"\x0a\x0b\x0a\x0b"),
    );
    md.insert_bin(
        "x-grpc-test-echo-trailing-bin",
        MetadataValue::from_bytes(b"\xab\xab\xab"),
    );
    md.insert(
        "x-grpc-test-echo-trailing-ascii",
        "trailing ascii".parse().unwrap(),
    );
    md.insert("x-not-echoed", "nope".parse().unwrap());
}

fn assert_initial_echo(md: &MetadataMap) {
    let values: Vec<_> = md
        .get_all("x-grpc-test-echo-initial")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        values,
        ["test_initial_metadata_value", "second value, same key"]
    );
    assert_eq!(
        md.get_bin("x-grpc-test-echo-initial-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        b"\x0a\x0b\x0a\x0b"
    );
    assert!(md.get("x-not-echoed").is_none());
}

fn assert_trailing_echo(md: &MetadataMap) {
    assert_eq!(
        md.get_bin("x-grpc-test-echo-trailing-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        b"\xab\xab\xab"
    );
    assert_eq!(
        md.get("x-grpc-test-echo-trailing-ascii").unwrap(),
        "trailing ascii"
    );
}

#[tokio::test]
async fn metadata_echo_unary_ok() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let mut req = Request::new(SimpleRequest {
        response_size: 314_159,
        ..Default::default()
    });
    add_echo_metadata(req.metadata_mut());
    // tonic merges the trailers into the unary response's metadata.
    let resp = client.unary_call(req).await.unwrap();
    assert_initial_echo(resp.metadata());
    assert_trailing_echo(resp.metadata());
}

#[tokio::test]
async fn metadata_echo_unary_error_trailers_only() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let mut req = Request::new(SimpleRequest {
        response_status: echo_status(2, "boom"),
        ..Default::default()
    });
    add_echo_metadata(req.metadata_mut());
    let err = client.unary_call(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(err.message(), "boom");
    assert_initial_echo(err.metadata());
    assert_trailing_echo(err.metadata());
}

#[tokio::test]
async fn metadata_echo_streaming_headers_and_trailers() {
    let server = TestServer::start();
    let mut client = connect(&server).await;

    // Separate HEADERS and trailers: check each lands in the right place.
    let mut req = Request::new(StreamingOutputCallRequest {
        response_parameters: vec![params(5, 0)],
        ..Default::default()
    });
    add_echo_metadata(req.metadata_mut());
    let resp = client.streaming_output_call(req).await.unwrap();
    assert_initial_echo(resp.metadata());
    assert!(resp
        .metadata()
        .get("x-grpc-test-echo-trailing-ascii")
        .is_none());
    let mut stream = resp.into_inner();
    assert_eq!(
        stream
            .message()
            .await
            .unwrap()
            .unwrap()
            .payload
            .unwrap()
            .body
            .len(),
        5
    );
    assert!(stream.message().await.unwrap().is_none());
    let trailers = stream.trailers().await.unwrap().expect("trailers");
    assert_trailing_echo(&trailers);
    assert!(trailers.get("x-grpc-test-echo-initial").is_none());

    // Error status after messages: trailing metadata rides with the status.
    let mut req = Request::new(StreamingOutputCallRequest {
        response_parameters: vec![params(1, 0)],
        response_status: echo_status(13, SPECIAL_MESSAGE),
        ..Default::default()
    });
    add_echo_metadata(req.metadata_mut());
    let resp = client.streaming_output_call(req).await.unwrap();
    assert_initial_echo(resp.metadata());
    let mut stream = resp.into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert_eq!(err.message(), SPECIAL_MESSAGE);
    assert_trailing_echo(err.metadata());
}

#[tokio::test]
async fn streaming_output_with_intervals() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let sizes = [31_415, 9, 2_653, 58_979];
    let start = Instant::now();
    let mut stream = client
        .streaming_output_call(StreamingOutputCallRequest {
            response_parameters: sizes.iter().map(|s| params(*s, 100_000)).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    let mut arrival = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m.payload.unwrap().body.len() as i32);
        arrival.push(start.elapsed());
    }
    assert_eq!(got, sizes);
    // Each response waits 100 ms before it is sent.
    assert!(arrival[0] >= Duration::from_millis(95), "{arrival:?}");
    assert!(arrival[3] >= Duration::from_millis(395), "{arrival:?}");
}

#[tokio::test]
async fn streaming_input_aggregates() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let reqs: Vec<_> = [27_182usize, 8, 1_828, 45_904]
        .into_iter()
        .map(|n| StreamingInputCallRequest {
            payload: zero_payload(n),
            expect_compressed: None,
        })
        .collect();
    let resp = client
        .streaming_input_call(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.aggregated_payload_size, 74_922);

    let resp = client
        .streaming_input_call(tokio_stream::iter(Vec::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.aggregated_payload_size, 0);
}

#[tokio::test]
async fn full_duplex_ping_pong() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let (tx, rx) = mpsc::channel(4);
    let mut stream = client
        .full_duplex_call(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let sizes = [31_415, 9, 2_653, 58_979];
    for size in sizes {
        tx.send(StreamingOutputCallRequest {
            response_parameters: vec![params(size, 0)],
            payload: zero_payload(1000),
            ..Default::default()
        })
        .await
        .unwrap();
        // The answer comes before the next request is sent.
        let m = stream.message().await.unwrap().unwrap();
        assert_eq!(m.payload.unwrap().body.len(), size as usize);
    }
    // Two responses for one request.
    tx.send(StreamingOutputCallRequest {
        response_parameters: vec![params(1, 0), params(2, 1000)],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        stream
            .message()
            .await
            .unwrap()
            .unwrap()
            .payload
            .unwrap()
            .body
            .len(),
        1
    );
    assert_eq!(
        stream
            .message()
            .await
            .unwrap()
            .unwrap()
            .payload
            .unwrap()
            .body
            .len(),
        2
    );
    drop(tx); // half-close
    assert!(stream.message().await.unwrap().is_none());
}

#[tokio::test]
async fn full_duplex_status_and_trailing_echo() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let (tx, rx) = mpsc::channel(4);
    let mut req = Request::new(ReceiverStream::new(rx));
    add_echo_metadata(req.metadata_mut());
    let resp = client.full_duplex_call(req).await.unwrap();
    assert_initial_echo(resp.metadata());
    let mut stream = resp.into_inner();
    tx.send(StreamingOutputCallRequest {
        response_parameters: vec![params(3, 0)],
        response_status: echo_status(2, SPECIAL_MESSAGE),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(stream.message().await.unwrap().is_some());
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(err.message(), SPECIAL_MESSAGE);
    assert_trailing_echo(err.metadata());
}

#[tokio::test]
async fn half_duplex_answers_after_half_close() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let (tx, rx) = mpsc::channel(4);
    let mut stream = client
        .half_duplex_call(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(StreamingOutputCallRequest {
        response_parameters: vec![params(10, 0)],
        ..Default::default()
    })
    .await
    .unwrap();
    // Nothing until the client half-closes.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.message())
            .await
            .is_err()
    );
    tx.send(StreamingOutputCallRequest {
        response_parameters: vec![params(20, 0), params(30, 0)],
        ..Default::default()
    })
    .await
    .unwrap();
    drop(tx);
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m.payload.unwrap().body.len());
    }
    assert_eq!(got, [10, 20, 30]);
}

#[tokio::test]
async fn unimplemented_method_and_service() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let err = client.unimplemented_call(Empty {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.target()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut other = UnimplementedServiceClient::new(channel);
    let mut req = Request::new(Empty {});
    req.metadata_mut().insert(
        "x-grpc-test-echo-trailing-ascii",
        "even here".parse().unwrap(),
    );
    let err = other.unimplemented_call(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(
        err.metadata()
            .get("x-grpc-test-echo-trailing-ascii")
            .unwrap(),
        "even here"
    );
}

#[tokio::test]
async fn header_reflection() {
    let server = TestServer::start();
    let mut client = connect(&server).await;
    let mut req = Request::new(SimpleRequest::default());
    req.metadata_mut()
        .insert("x-rgrpc-echo-request-headers", "1".parse().unwrap());
    req.metadata_mut()
        .insert("x-custom-first", "a".parse().unwrap());
    req.set_timeout(Duration::from_secs(5));
    let resp = client.unary_call(req).await.unwrap();
    let md = resp.metadata();
    let get = |k: &str| md.get(k).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(get("x-rgrpc-req-te").as_deref(), Some("trailers"));
    assert!(get("x-rgrpc-req-user-agent").unwrap().starts_with("tonic/"));
    assert_eq!(
        get("x-rgrpc-req-content-type").as_deref(),
        Some("application/grpc")
    );
    let timeout = get("x-rgrpc-req-grpc-timeout").unwrap();
    assert!(
        timeout.ends_with(['H', 'M', 'S', 'm', 'u', 'n']),
        "{timeout}"
    );
    assert_eq!(get("x-rgrpc-req-authority"), Some(server.target()));
    assert_eq!(
        get("x-rgrpc-req-path").as_deref(),
        Some("/grpc.testing.TestService/UnaryCall")
    );
    let order = get("x-rgrpc-req-header-order").unwrap();
    eprintln!("header order as received: {order}");
    let names: Vec<&str> = order.split(',').collect();
    for n in [
        "te",
        "content-type",
        "user-agent",
        "grpc-timeout",
        "x-rgrpc-echo-request-headers",
        "x-custom-first",
    ] {
        assert!(names.contains(&n), "{n} missing from {order}");
    }
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(
        pos("x-rgrpc-echo-request-headers") < pos("x-custom-first"),
        "{order}"
    );

    // Not asked for: nothing reflected.
    let resp = client.unary_call(SimpleRequest::default()).await.unwrap();
    assert!(resp.metadata().get("x-rgrpc-req-path").is_none());
    assert!(resp.metadata().get("x-rgrpc-req-grpc-timeout").is_none());
}

#[tokio::test]
async fn sleep_before_answering() {
    let server = TestServer::start();
    let mut client = connect(&server).await;

    let mut req = Request::new(Empty {});
    req.metadata_mut()
        .insert("x-rgrpc-sleep-ms", "300".parse().unwrap());
    let start = Instant::now();
    client.empty_call(req).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));

    // The sleep delays the response headers of streaming calls too.
    let mut req = Request::new(StreamingOutputCallRequest {
        response_parameters: vec![params(1, 0)],
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-rgrpc-sleep-ms", "300".parse().unwrap());
    let start = Instant::now();
    let resp = client.streaming_output_call(req).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    resp.into_inner().message().await.unwrap().unwrap();

    // A deadline shorter than the sleep: DEADLINE_EXCEEDED, early.
    let mut req = Request::new(Empty {});
    req.metadata_mut()
        .insert("x-rgrpc-sleep-ms", "2000".parse().unwrap());
    req.set_timeout(Duration::from_millis(100));
    let start = Instant::now();
    let err = client.empty_call(req).await.unwrap_err();
    // tonic's client enforces the deadline itself (CANCELLED "Timeout
    // expired"); the server's own grpc-timeout handling would give
    // DEADLINE_EXCEEDED. Either way the call ends early.
    assert!(
        matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn max_decoding_message_size() {
    let server = TestServer::start_with(ServerOptions {
        max_decoding_message_size: Some(1024),
        ..Default::default()
    });
    let mut client = connect(&server).await;
    client
        .unary_call(SimpleRequest {
            payload: zero_payload(900),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = client
        .unary_call(SimpleRequest {
            payload: zero_payload(2048),
            ..Default::default()
        })
        .await
        .unwrap_err();
    // tonic reports an over-limit message as OUT_OF_RANGE (not the
    // RESOURCE_EXHAUSTED other gRPC implementations use).
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
}

#[tokio::test]
async fn max_concurrent_streams() {
    let server = TestServer::start_with(ServerOptions {
        max_concurrent_streams: Some(1),
        ..Default::default()
    });
    let mut client = connect(&server).await;
    // One call first, so the client has the server's SETTINGS
    // (MAX_CONCURRENT_STREAMS = 1) before opening two streams at once.
    client.empty_call(Empty {}).await.unwrap();
    let call = |mut c: common::Client| async move {
        let mut req = Request::new(Empty {});
        req.metadata_mut()
            .insert("x-rgrpc-sleep-ms", "300".parse().unwrap());
        c.empty_call(req).await.unwrap();
    };
    let start = Instant::now();
    tokio::join!(call(client.clone()), call(client.clone()));
    // With one stream allowed on the (single) connection, the calls queue.
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
}
