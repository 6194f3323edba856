//! The four RPC patterns against a real tonic server, over TCP and a Unix socket.
mod support;
use prost::Message;
use rgrpc_core::{CallOptions, Code, SendFlags};
use support::*;

#[test]
fn unary_sizes_and_empty() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let (resp, st) = unary(
        &ch,
        UNARY,
        CallOptions::default(),
        &simple(271_828, 314_159),
    );
    assert_code(&st, Code::Ok);
    assert_eq!(body_len_simple(&resp.unwrap()), 314_159);
    let (resp, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Ok);
    assert!(resp.unwrap().is_empty());
}

#[test]
fn server_streaming_in_order() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch
        .start_call(SERVER_STREAM, CallOptions::default())
        .unwrap();
    block(call.send(&stream_req(&[31415, 9, 2653, 58979], 0), last())).unwrap();
    let (msgs, st) = drain(&call);
    assert_code(&st, Code::Ok);
    let sizes: Vec<usize> = msgs.iter().map(body_len_stream).collect();
    assert_eq!(sizes, vec![31415, 9, 2653, 58979]);
    assert!(!call.is_active());
}

#[test]
fn client_streaming_aggregates() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch
        .start_call(CLIENT_STREAM, CallOptions::default())
        .unwrap();
    for n in [27182, 8, 1828, 45904] {
        let req = pb::StreamingInputCallRequest {
            payload: payload(n),
            ..Default::default()
        };
        block(call.send(&req.encode_to_vec(), SendFlags::default())).unwrap();
    }
    block(call.close_send()).unwrap();
    let (msgs, st) = drain(&call);
    assert_code(&st, Code::Ok);
    assert_eq!(msgs.len(), 1);
    let r = pb::StreamingInputCallResponse::decode(msgs[0].as_ref()).unwrap();
    assert_eq!(r.aggregated_payload_size, 74922);
}

#[test]
fn bidi_ping_pong_lock_step() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap();
    for (req, resp) in [(27182, 31415), (8, 9), (1828, 2653), (45904, 58979)] {
        let mut r =
            pb::StreamingOutputCallRequest::decode(stream_req(&[resp], 0).as_slice()).unwrap();
        r.payload = payload(req);
        block(call.send(&r.encode_to_vec(), SendFlags::default())).unwrap();
        let m = block(call.recv()).unwrap().expect("a response per request");
        assert_eq!(body_len_stream(&m), resp as usize);
    }
    block(call.close_send()).unwrap();
    let (rest, st) = drain(&call);
    assert!(rest.is_empty());
    assert_code(&st, Code::Ok);
}

#[test]
fn empty_stream() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap();
    block(call.close_send()).unwrap();
    let (msgs, st) = drain(&call);
    assert!(msgs.is_empty());
    assert_code(&st, Code::Ok);
    // finish is repeatable and recv stays at the end.
    assert_eq!(block(call.recv()).unwrap(), None);
    assert_code(&block(call.finish()).unwrap(), Code::Ok);
}

#[test]
fn send_after_close_is_refused() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap();
    block(call.close_send()).unwrap();
    let e = block(call.send(b"", SendFlags::default())).unwrap_err();
    assert!(
        matches!(
            e,
            rgrpc_core::CallError::SendClosed | rgrpc_core::CallError::Ended
        ),
        "{e:?}"
    );
}

#[test]
fn unix_socket_target() {
    let dir = std::env::temp_dir().join(format!("rgrpc-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let srv = TestServer::start_with(ServerOptions {
        unix_path: Some(path.clone()),
        ..Default::default()
    });
    for target in [
        format!("unix:{}", path.display()),
        format!("unix://{}", path.display()),
    ] {
        let ch = channel(&target);
        let (resp, st) = unary(&ch, UNARY, CallOptions::default(), &simple(10, 20));
        assert_code(&st, Code::Ok);
        assert_eq!(body_len_simple(&resp.unwrap()), 20);
        assert_eq!(ch.authority(), "localhost");
    }
    drop(srv);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ipv4_list_uses_first_that_connects() {
    let srv = TestServer::start();
    let port = srv.addr().port();
    // 127.0.0.1:1 refuses; the second address is the server.
    let ch = channel(&format!("ipv4:127.0.0.1:1,127.0.0.1:{port}"));
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Ok);
    let ch = channel(&format!("dns:///localhost:{port}"));
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Ok);
}

/// The response headers are readable as soon as they arrive, before the
/// first message (the server sends them at once, the message later).
#[test]
fn initial_metadata_before_the_first_message() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let mut o = CallOptions::default();
    o.metadata
        .add("x-grpc-test-echo-initial", b"early")
        .unwrap();
    let call = ch.start_call(SERVER_STREAM, o).unwrap();
    block(call.send(&stream_req(&[1], 1_500_000), last())).unwrap();
    let t0 = std::time::Instant::now();
    let md = block(call.initial_metadata()).unwrap().clone();
    let waited = t0.elapsed();
    assert_eq!(md.find("x-grpc-test-echo-initial"), Some(&b"early"[..]));
    assert!(
        waited < std::time::Duration::from_millis(1000),
        "initial metadata took {waited:?}: it waited for the first message"
    );
    let (msgs, st) = drain(&call);
    assert_eq!(msgs.len(), 1);
    assert_code(&st, Code::Ok);
}
