//! Message size limits in both directions.
mod support;
use rgrpc_core::channel::OptionValue;
use rgrpc_core::{CallError, CallOptions, ChannelOptions, Code};
use support::*;

fn opts(key: &str, v: i64) -> ChannelOptions {
    let mut o = ChannelOptions::default();
    o.set(key, OptionValue::Int(v)).unwrap();
    o
}

#[test]
fn receive_limit_set_by_option() {
    let srv = TestServer::start();
    let ch = channel_with(&srv.target(), opts("grpc.max_receive_message_length", 1000));
    let (_, st) = unary(&ch, UNARY, CallOptions::default(), &simple(0, 900));
    assert_code(&st, Code::Ok);
    let (resp, st) = unary(&ch, UNARY, CallOptions::default(), &simple(0, 2000));
    assert!(resp.is_none());
    assert_code(&st, Code::ResourceExhausted);
    assert!(st.message().contains("larger than max"), "{st}");
    // The connection is still usable.
    let (_, st) = unary(&ch, UNARY, CallOptions::default(), &simple(0, 10));
    assert_code(&st, Code::Ok);
}

#[test]
fn default_receive_limit_is_4_mib() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let (_, st) = unary(
        &ch,
        UNARY,
        CallOptions::default(),
        &simple(0, 4 * 1024 * 1024 - 64),
    );
    assert_code(&st, Code::Ok);
    let (_, st) = unary(
        &ch,
        UNARY,
        CallOptions::default(),
        &simple(0, 4 * 1024 * 1024 + 1),
    );
    assert_code(&st, Code::ResourceExhausted);
    let ch = channel_with(&srv.target(), opts("grpc.max_receive_message_length", -1));
    let (resp, st) = unary(
        &ch,
        UNARY,
        CallOptions::default(),
        &simple(0, 6 * 1024 * 1024),
    );
    assert_code(&st, Code::Ok);
    assert_eq!(body_len_simple(&resp.unwrap()), 6 * 1024 * 1024);
}

#[test]
fn send_limit_set_by_option() {
    let srv = TestServer::start();
    let ch = channel_with(&srv.target(), opts("grpc.max_send_message_length", 100));
    let call = ch.start_call(UNARY, CallOptions::default()).unwrap();
    assert_eq!(
        block(call.send(&simple(200, 1), last())),
        Err(CallError::Ended)
    );
    let st = block(call.finish()).unwrap();
    assert_code(&st, Code::ResourceExhausted);
    assert!(
        st.message().contains("Sent message larger than max"),
        "{st}"
    );
    let (_, st) = unary(&ch, UNARY, CallOptions::default(), &simple(10, 1));
    assert_code(&st, Code::Ok);
}

#[test]
fn server_side_limit() {
    let srv = TestServer::start_with(ServerOptions {
        max_decoding_message_size: Some(1024),
        ..Default::default()
    });
    let ch = channel(&srv.target());
    let (resp, st) = unary(&ch, UNARY, CallOptions::default(), &simple(4096, 1));
    assert!(resp.is_none());
    // tonic reports its own limit as OUT_OF_RANGE; grpcio and C-core use RESOURCE_EXHAUSTED.
    assert!(
        matches!(st.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{st}"
    );
}

#[test]
fn large_messages_both_ways_exercise_flow_control() {
    let srv = TestServer::start_with(ServerOptions {
        max_decoding_message_size: Some(16 << 20),
        ..Default::default()
    });
    let ch = channel_with(
        &srv.target(),
        opts("grpc.max_receive_message_length", 16 << 20),
    );
    let (resp, st) = unary(
        &ch,
        UNARY,
        CallOptions::default(),
        &simple(8 << 20, 8 << 20),
    );
    assert_code(&st, Code::Ok);
    assert_eq!(body_len_simple(&resp.unwrap()), 8 << 20);
}
