//! Per-call statistics against a real tonic server: messages and bytes
//! each way match what was sent and received (and what the server
//! counted), wire bytes show compression, times are ordered and match a
//! server that takes its time; readable while the call runs.
mod support;
use bytes::Bytes;
use prost::Message as _;
use rgrpc_core::codec::compression::Compression;
use rgrpc_core::{CallOptions, Code, SendFlags};
use std::time::Duration;
use support::*;

#[test]
fn unary_stats_match_the_messages() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let req = simple(100, 300);
    let call = ch.start_call(UNARY, timeout(5000)).unwrap();
    let s = call.stats();
    assert_eq!((s.attempts, s.messages_sent, s.ended), (0, 0, false));
    assert_eq!(s.pick_wait, None);
    block(call.send(&req, last())).unwrap();
    let (msgs, st) = drain(&call);
    assert_code(&st, Code::Ok);
    let s = call.stats();
    assert_eq!(s.attempts, 1);
    assert_eq!((s.messages_sent, s.bytes_sent), (1, req.len() as u64));
    assert_eq!(s.wire_bytes_sent, req.len() as u64 + 5);
    assert_eq!(s.messages_received, 1);
    assert_eq!(s.bytes_received, msgs[0].len() as u64);
    assert_eq!(s.wire_bytes_received, msgs[0].len() as u64 + 5);
    let pick = s.pick_wait.expect("picked");
    let first = s.time_to_first_response.expect("headers");
    assert!(pick <= first && first <= s.total, "{s:?}");
    assert!(s.ended);
    // Final: no longer grows.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(call.stats().total, s.total);
}

#[test]
fn a_slow_server_shows_in_time_to_first_response() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch
        .start_call(UNARY, md_opts(&[("x-rgrpc-sleep-ms", b"200")]))
        .unwrap();
    block(call.send(&simple(1, 1), last())).unwrap();
    let (_, st) = drain(&call);
    assert_code(&st, Code::Ok);
    let s = call.stats();
    let first = s.time_to_first_response.unwrap();
    assert!(first >= Duration::from_millis(195), "{s:?}");
    assert!(s.pick_wait.unwrap() < Duration::from_millis(150), "{s:?}");
}

#[test]
fn streams_count_every_message_and_wire_bytes_show_compression() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    // Client stream, gzip: wire bytes below the messages' bytes; the
    // server's count of payload bytes matches what was sent.
    let opts = CallOptions {
        compression: Some(Compression::Gzip),
        ..timeout(5000)
    };
    let call = ch.start_call(CLIENT_STREAM, opts).unwrap();
    let mut sent = 0u64;
    let mut payload_total = 0i32;
    for i in 0..10usize {
        let req = pb::StreamingInputCallRequest {
            payload: payload(1000 + i),
            ..Default::default()
        }
        .encode_to_vec();
        sent += req.len() as u64;
        payload_total += 1000 + i as i32;
        block(call.send(&req, SendFlags::default())).unwrap();
    }
    block(call.close_send()).unwrap();
    let (msgs, st) = drain(&call);
    assert_code(&st, Code::Ok);
    let r = pb::StreamingInputCallResponse::decode(msgs[0].as_ref()).unwrap();
    assert_eq!(r.aggregated_payload_size, payload_total);
    let s = call.stats();
    assert_eq!((s.messages_sent, s.bytes_sent), (10, sent));
    assert!(s.wire_bytes_sent < s.bytes_sent / 4, "{s:?}");

    // Server stream: every message counted; readable while it runs.
    let call = ch.start_call(SERVER_STREAM, timeout(5000)).unwrap();
    block(call.send(&stream_req(&[100; 20], 20_000), last())).unwrap();
    let first: Bytes = block(call.recv()).unwrap().unwrap();
    let mid = call.stats();
    assert!(!mid.ended && mid.messages_received >= 1, "{mid:?}");
    let (rest, st) = drain(&call);
    assert_code(&st, Code::Ok);
    let s = call.stats();
    assert_eq!(s.messages_received, 20);
    let bytes: usize = first.len() + rest.iter().map(|m| m.len()).sum::<usize>();
    assert_eq!(s.bytes_received, bytes as u64);
    assert_eq!(s.wire_bytes_received, bytes as u64 + 20 * 5);
    assert!(s.total >= mid.total);
}
