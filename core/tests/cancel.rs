//! Cancellation: from another thread while blocked, idempotence, dropping an
//! active call, closing the channel, and concurrent receivers.
mod support;
use rgrpc_core::{CallError, CallOptions, Code};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn cancel_from_another_thread_unblocks_recv() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = Arc::new(ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap());
    block(call.send(&stream_req(&[5], 0), Default::default())).unwrap();
    assert!(block(call.recv()).unwrap().is_some());
    let c2 = call.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        assert!(c2.cancel());
        assert!(!c2.cancel(), "second cancel is a no-op");
    });
    let t0 = Instant::now();
    assert_eq!(
        block(call.recv()).unwrap(),
        None,
        "blocked recv returns at cancel"
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    t.join().unwrap();
    let st = block(call.finish()).unwrap();
    assert_code(&st, Code::Cancelled);
    assert_eq!(
        block(call.send(b"x", Default::default())),
        Err(CallError::Ended)
    );
}

#[test]
fn cancel_before_anything_was_sent() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch
        .start_call(CLIENT_STREAM, CallOptions::default())
        .unwrap();
    call.cancel();
    assert_code(&block(call.finish()).unwrap(), Code::Cancelled);
    assert_eq!(ch.active_calls(), 0);
}

#[test]
fn dropping_an_active_call_cancels_it() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap();
    block(call.send(&stream_req(&[1], 0), Default::default())).unwrap();
    assert_eq!(ch.active_calls(), 1);
    drop(call);
    assert_eq!(ch.active_calls(), 0);
    // The channel still works.
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Ok);
}

#[test]
fn channel_close_cancels_calls_and_refuses_new_ones() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = Arc::new(ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap());
    block(call.send(&stream_req(&[1], 0), Default::default())).unwrap();
    assert!(block(call.recv()).unwrap().is_some());
    let c2 = call.clone();
    let waiter = std::thread::spawn(move || block(c2.recv()).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    ch.close();
    assert_eq!(waiter.join().unwrap(), None);
    assert_code(&block(call.finish()).unwrap(), Code::Cancelled);
    assert!(ch.start_call(EMPTY, CallOptions::default()).is_err());
    ch.close(); // idempotent
}

#[test]
fn second_concurrent_receiver_is_busy() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = Arc::new(ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap());
    let c2 = call.clone();
    let t = std::thread::spawn(move || block(c2.recv()));
    std::thread::sleep(Duration::from_millis(100));
    assert!(matches!(block(call.recv()), Err(CallError::Busy(_))));
    call.cancel();
    assert_eq!(t.join().unwrap(), Ok(None));
}

#[test]
fn cancel_is_seen_by_the_server() {
    // After cancel, the stream is reset: a server-streaming call with a long
    // interval must not keep the connection busy; new calls work at once.
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    for _ in 0..20 {
        let call = ch
            .start_call(SERVER_STREAM, CallOptions::default())
            .unwrap();
        block(call.send(&stream_req(&[1; 100], 500_000), last())).unwrap();
        call.cancel();
    }
    let (_, st) = unary(&ch, EMPTY, timeout(2000), &[]);
    assert_code(&st, Code::Ok);
}
