//! Deadlines: before and during the call, zero, and while connecting.
mod support;
use rgrpc_core::{CallOptions, Code};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn expires_before_the_server_answers() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let mut opts = md_opts(&[("x-rgrpc-sleep-ms", b"3000")]);
    opts = opts.with_timeout(Duration::from_millis(200));
    let t0 = Instant::now();
    let (resp, st) = unary(&ch, UNARY, opts, &simple(1, 1));
    assert!(resp.is_none());
    assert_code(&st, Code::DeadlineExceeded);
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn expires_during_a_stream() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch.start_call(SERVER_STREAM, timeout(600)).unwrap();
    // 10 messages, 200 ms apart: some arrive, then the deadline ends the call.
    block(call.send(&stream_req(&[10; 10], 200_000), last())).unwrap();
    let (msgs, st) = drain(&call);
    assert_code(&st, Code::DeadlineExceeded);
    assert!(!msgs.is_empty() && msgs.len() < 10, "got {}", msgs.len());
    assert_eq!(call.time_remaining(), Some(Duration::ZERO));
}

#[test]
fn zero_timeout_fails_at_once() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let (_, st) = unary(&ch, EMPTY, timeout(0), &[]);
    assert_code(&st, Code::DeadlineExceeded);
}

#[test]
fn time_remaining_counts_down() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch.start_call(FULL_DUPLEX, timeout(10_000)).unwrap();
    let a = call.time_remaining().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let b = call.time_remaining().unwrap();
    assert!(a <= Duration::from_secs(10) && b < a);
    let no = ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap();
    assert_eq!(no.time_remaining(), None);
}

#[test]
fn expires_while_connecting() {
    // A listener that accepts TCP but never speaks HTTP/2.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        l.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok((s, _)) = l.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let ch = channel(&addr.to_string());
    let t0 = Instant::now();
    let (_, st) = unary(&ch, EMPTY, timeout(300), &[]);
    assert_code(&st, Code::DeadlineExceeded);
    assert!(t0.elapsed() < Duration::from_secs(2));
    drop(keep);
}
