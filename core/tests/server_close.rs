//! The server going away: mid-stream, refused connections, and coming back.
mod support;
use rgrpc_core::{CallOptions, Code};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn server_killed_mid_stream_is_unavailable() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch
        .start_call(SERVER_STREAM, CallOptions::default())
        .unwrap();
    block(call.send(&stream_req(&[10; 50], 100_000), last())).unwrap();
    assert!(block(call.recv()).unwrap().is_some());
    srv.kill();
    let (_, st) = drain(&call);
    assert_code(&st, Code::Unavailable);
}

#[test]
fn connection_refused_is_unavailable() {
    let ch = channel("127.0.0.1:1");
    let (resp, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert!(resp.is_none());
    assert_code(&st, Code::Unavailable);
    assert!(st.message().contains("127.0.0.1:1"), "{st}");
    let ch = channel("unix:/nonexistent/rgrpc.sock");
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Unavailable);
}

#[test]
fn calls_succeed_again_after_a_restart() {
    let srv = TestServer::start();
    let port = srv.addr().port();
    let ch = channel(&srv.target());
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Ok);
    srv.kill();
    // Fail fast while the server is down.
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Unavailable);
    let _srv = TestServer::start_with(ServerOptions {
        port: Some(port),
        ..Default::default()
    });
    // The channel reconnects by itself within its backoff (about 1 s):
    // fail-fast calls succeed again without any action by the user...
    let t0 = Instant::now();
    loop {
        let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
        if st.is_ok() {
            break;
        }
        assert_code(&st, Code::Unavailable);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no reconnect within 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...and wait-for-ready calls never see the outage.
    let wfr = CallOptions {
        wait_for_ready: Some(true),
        ..timeout(5000)
    };
    let (_, st) = unary(&ch, EMPTY, wfr, &[]);
    assert_code(&st, Code::Ok);
}
