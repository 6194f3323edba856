//! Shared fixtures for the integration tests: a real tonic interop server,
//! protobuf helpers and thin wrappers over the rgrpc core API.
#![allow(dead_code)]

pub mod certs;
pub mod faults;
pub mod raw;

use bytes::Bytes;
use prost::Message;
use rgrpc_core::{rt, Call, CallOptions, Channel, ChannelOptions, Code, SendFlags, Status};
pub use rgrpc_tonic_interop::pb;
#[allow(unused_imports)]
pub use rgrpc_tonic_interop::{ServerOptions, TestServer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub const UNARY: &str = "/grpc.testing.TestService/UnaryCall";
pub const EMPTY: &str = "/grpc.testing.TestService/EmptyCall";
pub const SERVER_STREAM: &str = "/grpc.testing.TestService/StreamingOutputCall";
pub const CLIENT_STREAM: &str = "/grpc.testing.TestService/StreamingInputCall";
pub const FULL_DUPLEX: &str = "/grpc.testing.TestService/FullDuplexCall";

/// Runs a future on the calling thread with rgrpc's runtime (as the C API does).
pub fn block<F: Future>(f: F) -> F::Output {
    rt::block_on(f).expect("block_on")
}

pub fn channel(target: &str) -> Channel {
    Channel::new(target, ChannelOptions::default()).expect("channel")
}

pub fn channel_with(target: &str, opts: ChannelOptions) -> Channel {
    Channel::new(target, opts).expect("channel")
}

pub fn payload(n: usize) -> Option<pb::Payload> {
    Some(pb::Payload {
        r#type: 0,
        body: vec![0; n],
    })
}

pub fn simple(req_size: usize, resp_size: i32) -> Vec<u8> {
    pb::SimpleRequest {
        response_size: resp_size,
        payload: payload(req_size),
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn with_status(code: i32, message: &str) -> Vec<u8> {
    pb::SimpleRequest {
        response_status: Some(pb::EchoStatus {
            code,
            message: message.into(),
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn stream_req(sizes: &[i32], interval_us: i32) -> Vec<u8> {
    pb::StreamingOutputCallRequest {
        response_parameters: sizes
            .iter()
            .map(|s| pb::ResponseParameters {
                size: *s,
                interval_us,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn body_len_simple(b: &Bytes) -> usize {
    pb::SimpleResponse::decode(b.as_ref())
        .expect("SimpleResponse")
        .payload
        .map_or(0, |p| p.body.len())
}

pub fn body_len_stream(b: &Bytes) -> usize {
    pb::StreamingOutputCallResponse::decode(b.as_ref())
        .expect("StreamingOutputCallResponse")
        .payload
        .map_or(0, |p| p.body.len())
}

/// A unary call: (response, status).
pub fn unary(
    ch: &Channel,
    method: &str,
    opts: CallOptions,
    req: &[u8],
) -> (Option<Bytes>, Arc<Status>) {
    block(ch.unary(method, opts, req)).expect("start")
}

pub fn last() -> SendFlags {
    SendFlags {
        last: true,
        ..SendFlags::default()
    }
}

/// Reads every message and the status.
pub fn drain(call: &Call) -> (Vec<Bytes>, Arc<Status>) {
    block(async {
        let mut v = Vec::new();
        while let Some(m) = call.recv().await.expect("recv") {
            v.push(m);
        }
        (v, call.finish().await.expect("finish"))
    })
}

pub fn assert_code(st: &Status, code: Code) {
    assert_eq!(st.code(), code, "unexpected status: {st}");
}

pub fn timeout(ms: u64) -> CallOptions {
    CallOptions::default().with_timeout(Duration::from_millis(ms))
}

pub fn md_opts(pairs: &[(&str, &[u8])]) -> CallOptions {
    let mut o = CallOptions::default();
    for (k, v) in pairs {
        o.metadata.add(k, v).expect("metadata");
    }
    o
}

/// Channel options from grpcio-style integer and string keys (panics on a
/// refused one: a test's own mistake).
pub fn opts(ints: &[(&str, i64)], strs: &[(&str, &str)]) -> ChannelOptions {
    let mut o = ChannelOptions::default();
    for (k, v) in ints {
        o.set(k, rgrpc_core::channel::OptionValue::Int(*v)).unwrap();
    }
    for (k, v) in strs {
        o.set(k, rgrpc_core::channel::OptionValue::Str(v.to_string()))
            .unwrap();
    }
    o
}
