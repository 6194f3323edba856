//! The global cleanup, `rgrpc_core::shutdown` (`rgrpc_shutdown` in C). It
//! is final for the process, so this file is one test: everything before,
//! during and after it, in order.

mod support;

use bytes::Bytes;
use rgrpc_core::channel::{ConnectivityState, ReadyOutcome};
use rgrpc_core::completion::Notifier;
use rgrpc_core::rt::{self, RuntimeError};
use rgrpc_core::{CallOptions, Code, ShutdownError, StartError, Status};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// The names of this process's threads that the library started.
fn library_threads() -> Vec<String> {
    let mut names = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let comm = t.expect("task").path().join("comm");
        if let Ok(n) = std::fs::read_to_string(comm) {
            let n = n.trim().to_string();
            if n.starts_with("rgrpc-") {
                names.push(n);
            }
        }
    }
    names
}

#[test]
fn shutdown_closes_everything_joins_the_threads_and_is_final() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());

    // Calls work; the runtime's threads are there.
    let (resp, st) = unary(&ch, UNARY, timeout(10_000), &simple(1, 10));
    assert_code(&st, Code::Ok);
    assert_eq!(body_len_simple(&resp.expect("response")), 10);
    assert!(!library_threads().is_empty(), "no library thread before");

    // Refused from a callback (a library thread, or the thread driving
    // the I/O): it would wait for itself.
    let (tx, rx) = mpsc::channel();
    let call = ch
        .unary_async(
            UNARY,
            timeout(10_000),
            Bytes::from(simple(1, 1)),
            move |_st: &Arc<Status>, _resp: Option<&Bytes>| {
                tx.send(rgrpc_core::shutdown()).unwrap();
            },
        )
        .expect("start");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).expect("callback"),
        Err(ShutdownError::OnLibraryThread)
    );
    drop(call);
    assert!(!rt::is_shut_down());

    // What shutdown must end: a thread blocked on a stream that would go
    // on for a minute, a background call waiting for a server that is not
    // there (wait-for-ready), a subscriber.
    let streaming = {
        let ch = ch.clone();
        std::thread::spawn(move || {
            let call = ch
                .start_call(SERVER_STREAM, CallOptions::default())
                .expect("start");
            block(call.send(&stream_req(&[1; 60], 1_000_000), last())).expect("send");
            let (msgs, st) = drain(&call);
            (msgs.len(), st)
        })
    };
    let dead = channel("127.0.0.1:1");
    let (done_tx, done_rx) = mpsc::channel();
    let waiting = dead
        .unary_async(
            UNARY,
            CallOptions {
                wait_for_ready: Some(true),
                ..CallOptions::default()
            },
            Bytes::from(simple(1, 1)),
            move |st: &Arc<Status>, _resp: Option<&Bytes>| {
                done_tx.send((st.code(), st.message().to_string())).unwrap();
            },
        )
        .expect("start");
    waiting.detach();
    let (ready_tx, ready_rx) = mpsc::channel();
    let ready = dead
        .ready_future(
            Some(Box::new(move |o| ready_tx.send(o).unwrap())),
            Notifier::Pool,
        )
        .expect("ready future");
    let states = Arc::new(Mutex::new(Vec::new()));
    let seen = states.clone();
    ch.subscribe(Arc::new(move |s| seen.lock().unwrap().push(s)), false);
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    assert_eq!(rgrpc_core::shutdown(), Ok(()));
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(rt::is_shut_down());

    // Before it returned: the blocked thread was let go, the callback ran
    // with CANCELLED, the subscriber saw SHUTDOWN, the threads are gone.
    let (n, st) = streaming.join().expect("streaming thread");
    assert!(n < 60, "{n} messages");
    assert_code(&st, Code::Cancelled);
    let (code, msg) = done_rx
        .try_recv()
        .expect("done callback ran before shutdown returned");
    assert_eq!(code, Code::Cancelled);
    assert!(msg.contains("shut down"), "{msg}");
    assert_eq!(
        ready_rx.try_recv(),
        Ok(ReadyOutcome::ChannelClosed),
        "ready future's callback before shutdown returned"
    );
    assert_eq!(
        states.lock().unwrap().last(),
        Some(&ConnectivityState::Shutdown)
    );
    // The threads have been joined; a joined thread's /proc/self/task
    // entry can outlive the join by a moment (seen with worker threads).
    let t0 = std::time::Instant::now();
    while !library_threads().is_empty() && t0.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(library_threads(), Vec::<String>::new());

    // Final: everything that needs the runtime is refused; nothing starts
    // it again; a second shutdown does nothing.
    assert_eq!(
        ch.start_call(UNARY, CallOptions::default()).err(),
        Some(StartError::ChannelClosed)
    );
    let late = channel(&srv.target());
    match late.start_call(UNARY, CallOptions::default()) {
        Err(StartError::Runtime(m)) => assert!(m.contains("shut down"), "{m}"),
        Err(e) => panic!("start after shutdown: {e}"),
        Ok(_) => panic!("start after shutdown succeeded"),
    }
    assert!(rt::block_on(async { 1 }).is_none());
    assert_eq!(rt::handle().err(), Some(RuntimeError::ShutDown));
    assert_eq!(rt::set_worker_threads(1), Err(RuntimeError::ShutDown));
    assert_eq!(rgrpc_core::shutdown(), Ok(()));
    assert_eq!(library_threads(), Vec::<String>::new());
    assert_eq!(ch.state(false), ConnectivityState::Shutdown);
    drop((ready, ch, dead, late));
}
