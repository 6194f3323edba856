//! `SendFlags::buffer_hint` (C: `RGRPC_SEND_BUFFER_HINT`) against a real
//! tonic server: hinted messages wait in the call's buffer until a send
//! without the hint, `close_send`, or a full buffer; none is lost or
//! reordered.
mod support;
use prost::Message;
use rgrpc_core::call::CORK_LIMIT;
use rgrpc_core::{CallOptions, Code, SendFlags};
use std::time::Duration;
use support::*;

fn hint() -> SendFlags {
    SendFlags {
        buffer_hint: true,
        ..SendFlags::default()
    }
}

/// Thousands of hinted messages, flushed by close_send: the server counts
/// every byte.
#[test]
fn client_stream_of_hinted_messages_arrives_whole() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch
        .start_call(CLIENT_STREAM, CallOptions::default())
        .unwrap();
    let mut total = 0;
    for i in 0..5000usize {
        let n = i % 37;
        total += n;
        let req = pb::StreamingInputCallRequest {
            payload: payload(n),
            ..Default::default()
        };
        block(call.send(&req.encode_to_vec(), hint())).unwrap();
    }
    block(call.close_send()).unwrap();
    let (msgs, st) = drain(&call);
    assert_code(&st, Code::Ok);
    let r = pb::StreamingInputCallResponse::decode(msgs[0].as_ref()).unwrap();
    assert_eq!(r.aggregated_payload_size as usize, total);
}

/// A hinted message stays in the buffer until a send without the hint:
/// the server answers nothing before, and both answers, in order, after.
#[test]
fn hinted_message_waits_for_an_unhinted_one() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap();
    block(call.send(&stream_req(&[11], 0), hint())).unwrap();
    let early =
        block(async { tokio::time::timeout(Duration::from_millis(300), call.recv()).await });
    assert!(early.is_err(), "a hinted message was sent on its own");
    block(call.send(&stream_req(&[22], 0), SendFlags::default())).unwrap();
    let a = block(call.recv()).unwrap().unwrap();
    let b = block(call.recv()).unwrap().unwrap();
    assert_eq!((body_len_stream(&a), body_len_stream(&b)), (11, 22));
    block(call.close_send()).unwrap();
    let (rest, st) = drain(&call);
    assert!(rest.is_empty());
    assert_code(&st, Code::Ok);
}

/// The buffer is bounded: once hinted messages fill it they are written
/// without waiting for an unhinted send.
#[test]
fn full_buffer_is_written_without_a_flush() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap();
    // Each request carries 4 KiB of payload and asks for a 1-byte answer.
    let req = {
        let mut r = pb::StreamingOutputCallRequest::decode(&stream_req(&[1], 0)[..]).unwrap();
        r.payload = payload(4096);
        r.encode_to_vec()
    };
    let n = CORK_LIMIT / req.len() + 1;
    for _ in 0..n {
        block(call.send(&req, hint())).unwrap();
    }
    let first = block(async { tokio::time::timeout(Duration::from_secs(10), call.recv()).await });
    let first = first.expect("the full buffer was not written").unwrap();
    assert_eq!(body_len_stream(&first.unwrap()), 1);
    block(call.close_send()).unwrap();
    let (rest, st) = drain(&call);
    assert_code(&st, Code::Ok);
    assert_eq!(rest.len() + 1, n);
}
