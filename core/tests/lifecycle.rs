//! The connection lifecycle under faults, over real sockets: states and
//! their transitions (checked against the spec's table), server restarts,
//! silent listeners, GOAWAY, keepalive, MAX_CONCURRENT_STREAMS, idle
//! timeout, backoff without busy looping, subscribe/unsubscribe races.
mod support;
use bytes::Bytes;
use rgrpc_core::channel::{ConnectivityState as S, OptionValue};
use rgrpc_core::{CallOptions, Channel, ChannelOptions, Code};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::faults::*;
use support::raw::*;
use support::*;

fn opts(pairs: &[(&str, i64)]) -> ChannelOptions {
    let mut o = ChannelOptions::default();
    for (k, v) in pairs {
        o.set(k, OptionValue::Int(*v)).unwrap();
    }
    o
}

/// `opts` plus string options.
fn opts_with(pairs: &[(&str, i64)], strs: &[(&str, &str)]) -> ChannelOptions {
    let mut o = opts(pairs);
    for (k, v) in strs {
        o.set(k, OptionValue::Str((*v).to_string())).unwrap();
    }
    o
}

/// Records every state a subscriber sees.
struct Recorder {
    seen: Arc<Mutex<Vec<S>>>,
}

impl Recorder {
    fn new(ch: &Channel, try_to_connect: bool) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        ch.subscribe(
            Arc::new(move |st| s.lock().unwrap().push(st)),
            try_to_connect,
        );
        Recorder { seen }
    }

    fn states(&self) -> Vec<S> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `want` has been seen (bounded).
    fn wait_for(&self, want: S, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while !self.states().contains(&want) {
            assert!(
                Instant::now() < end,
                "never saw {want}: {:?}",
                self.states()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `want` has been seen after a `first` (bounded).
    fn wait_for_after(&self, first: S, want: S, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.states();
            if let Some(i) = v.iter().position(|s| *s == first) {
                if v[i + 1..].contains(&want) {
                    return;
                }
            }
            assert!(
                Instant::now() < end,
                "never saw {want} after {first}: {v:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every consecutive pair is a transition the spec allows.
    fn check_legal(&self) {
        let v = self.states();
        for w in v.windows(2) {
            assert!(
                w[0].may_become(w[1]),
                "illegal transition {} -> {} in {v:?}",
                w[0],
                w[1]
            );
        }
    }
}

#[test]
fn idle_connecting_ready_and_shutdown() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    assert_eq!(ch.state(false), S::Idle);
    let rec = Recorder::new(&ch, true);
    assert_eq!(block(ch.wait_for_ready()), S::Ready);
    rec.wait_for(S::Ready, 5);
    assert_eq!(rec.states()[..3], [S::Idle, S::Connecting, S::Ready]);
    // close: SHUTDOWN, waiters woken once.
    let ch2 = ch.clone();
    let waiter = std::thread::spawn(move || block(ch2.wait_for_state_change(S::Ready)));
    std::thread::sleep(Duration::from_millis(50));
    ch.close();
    assert_eq!(waiter.join().unwrap(), S::Shutdown);
    rec.wait_for(S::Shutdown, 5);
    assert_eq!(ch.state(true), S::Shutdown);
    assert_eq!(block(ch.wait_for_ready()), S::Shutdown);
    rec.check_legal();
    assert_eq!(
        rec.states().iter().filter(|s| **s == S::Shutdown).count(),
        1
    );
}

#[test]
fn server_restart_with_calls_in_flight() {
    let srv = TestServer::start();
    let port = srv.addr().port();
    let ch = channel_with(
        &srv.target(),
        opts(&[("grpc.initial_reconnect_backoff_ms", 200)]),
    );
    let rec = Recorder::new(&ch, true);
    let call = ch
        .start_call(SERVER_STREAM, CallOptions::default())
        .unwrap();
    block(call.send(&stream_req(&[10; 100], 50_000), last())).unwrap();
    assert!(block(call.recv()).unwrap().is_some());
    srv.kill();
    let (_, st) = drain(&call);
    assert_code(&st, Code::Unavailable);
    // A lost connection is not a failure: IDLE (as C-core, gRFC A62) ...
    rec.wait_for_after(S::Ready, S::Idle, 5);
    // ... until a call wants a connection and none can be made: a
    // fail-fast call fails once the new pass has failed.
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Unavailable);
    rec.wait_for(S::TransientFailure, 5);
    // Back: the channel heals itself.
    let _srv = TestServer::start_with(ServerOptions {
        port: Some(port),
        ..Default::default()
    });
    let end = Instant::now() + Duration::from_secs(10);
    while ch.state(false) != S::Ready {
        assert!(Instant::now() < end, "not READY again: {:?}", rec.states());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Ok);
    rec.check_legal();
    let v = rec.states();
    let last_ready = v.iter().rposition(|s| *s == S::Ready).unwrap();
    assert!(v[..last_ready].contains(&S::TransientFailure), "{v:?}");
}

#[test]
fn silent_listener_times_out_connecting() {
    let l = BadListener::start(true);
    let ch = channel_with(
        &l.addr.to_string(),
        opts(&[
            ("grpc.min_reconnect_backoff_ms", 300),
            ("grpc.initial_reconnect_backoff_ms", 100),
        ]),
    );
    let rec = Recorder::new(&ch, true);
    rec.wait_for(S::TransientFailure, 5);
    rec.check_legal();
    // Fail fast now; with wait_for_ready, the deadline ends the call.
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Unavailable);
    assert!(
        st.message().contains("timed out") || st.message().contains("answer"),
        "{st}"
    );
    let wfr = CallOptions {
        wait_for_ready: Some(true),
        ..timeout(500)
    };
    let (_, st) = unary(&ch, EMPTY, wfr, &[]);
    assert_code(&st, Code::DeadlineExceeded);
}

#[test]
fn backoff_does_not_busy_loop_and_can_be_reset() {
    let l = BadListener::start(false);
    let ch = channel(&l.addr.to_string());
    let rec = Recorder::new(&ch, true);
    std::thread::sleep(Duration::from_millis(3000));
    // Attempts at about 0, 1, 2.6 s (jittered): never a tight loop.
    let n = l.accepted();
    assert!((1..=4).contains(&n), "{n} attempts in 3 s");
    assert_eq!(ch.state(false), S::TransientFailure);
    // Reset: the next attempt comes at once.
    let before = l.accepted();
    ch.reset_connect_backoff();
    let end = Instant::now() + Duration::from_millis(500);
    while l.accepted() == before {
        assert!(
            Instant::now() < end,
            "reset_connect_backoff did not retry at once"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    rec.check_legal();
    // Wait-for-ready calls end CANCELLED when the channel closes.
    let ch2 = ch.clone();
    let t = std::thread::spawn(move || {
        let wfr = CallOptions {
            wait_for_ready: Some(true),
            ..timeout(10_000)
        };
        unary(&ch2, EMPTY, wfr, &[]).1
    });
    std::thread::sleep(Duration::from_millis(100));
    ch.close();
    assert_code(&t.join().unwrap(), Code::Cancelled);
}

#[test]
fn keepalive_detects_a_dead_server() {
    for (policy, lost) in [("pick_first", S::Idle), ("round_robin", S::Connecting)] {
        keepalive_detects_a_dead_server_with(policy, lost);
    }
}

fn keepalive_detects_a_dead_server_with(policy: &str, lost: S) {
    let srv = TestServer::start();
    let proxy = Proxy::start(srv.addr());
    let ch = channel_with(
        &proxy.addr.to_string(),
        opts_with(
            &[
                ("grpc.keepalive_time_ms", 200),
                ("grpc.keepalive_timeout_ms", 300),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.initial_reconnect_backoff_ms", 100),
            ],
            &[("grpc.lb_policy_name", policy)],
        ),
    );
    let rec = Recorder::new(&ch, false);
    let call = ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap();
    block(call.send(&stream_req(&[1], 0), Default::default())).unwrap();
    assert!(block(call.recv()).unwrap().is_some());
    std::thread::sleep(Duration::from_millis(600)); // pings answered: still fine
    assert!(call.is_active());
    proxy.freeze(true);
    let t0 = Instant::now();
    let (_, st) = drain(&call);
    assert_code(&st, Code::Unavailable);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // The connection is lost, not failed: pick_first IDLE (gRFC A62),
    // round_robin CONNECTING again (A61).
    rec.wait_for_after(S::Ready, lost, 5);
    proxy.freeze(false);
    // A fail-fast call waits for the new connection instead of failing
    // (before, the lost connection left the channel TRANSIENT_FAILURE and
    // this call failed UNAVAILABLE at once).
    let (_, st) = unary(&ch, EMPTY, timeout(5000), &[]);
    assert_code(&st, Code::Ok);
    assert!(proxy.connections() >= 2);
    rec.check_legal();
}

/// The ping budget (`grpc.http2.max_pings_without_data`) is renewed
/// whenever the client sends headers or data, as in C-core: a long-lived
/// stream that keeps sending keeps its keepalive pings going (they stop
/// after the budget only while nothing is sent).
#[test]
fn keepalive_budget_renews_with_data_on_a_long_stream() {
    let srv = TestServer::start();
    let proxy = Proxy::start(srv.addr());
    let ch = channel_with(
        &proxy.addr.to_string(),
        opts(&[
            ("grpc.keepalive_time_ms", 100),
            ("grpc.http2.max_pings_without_data", 2),
        ]),
    );
    let call = ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap();
    block(call.send(&stream_req(&[1], 0), Default::default())).unwrap();
    assert!(block(call.recv()).unwrap().is_some());
    let before = proxy.pings();
    // 1.5 s of messages every 50 ms on the one stream.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        block(call.send(&stream_req(&[1], 0), Default::default())).unwrap();
        assert!(block(call.recv()).unwrap().is_some());
        std::thread::sleep(Duration::from_millis(50));
    }
    let sending = proxy.pings() - before;
    // About 15 periods: the budget of 2 alone would allow 2.
    assert!(sending >= 6, "{sending} pings while sending");
    // Then silence on the stream: at most the budget more.
    let quiet_start = proxy.pings();
    std::thread::sleep(Duration::from_millis(1000));
    let quiet = proxy.pings() - quiet_start;
    assert!(quiet <= 3, "{quiet} pings while nothing was sent");
    assert!(call.is_active());
    block(call.close_send()).unwrap();
    let (_, st) = drain(&call);
    assert_code(&st, Code::Ok);
}

#[test]
fn max_concurrent_streams_one_and_fifty_calls() {
    let srv = TestServer::start_with(ServerOptions {
        max_concurrent_streams: Some(1),
        ..Default::default()
    });
    let ch = channel(&srv.target());
    let results = block(async {
        let futs = (0..50).map(|_| {
            let ch = ch.clone();
            async move {
                let o = md_opts(&[("x-rgrpc-sleep-ms", b"5")]);
                ch.unary(UNARY, o, &simple(10, 10)).await
            }
        });
        futures_util::future::join_all(futs).await
    });
    for r in results {
        let (resp, st) = r.unwrap();
        assert_code(&st, Code::Ok);
        assert_eq!(body_len_simple(&resp.unwrap()), 10);
    }
}

#[test]
fn idle_timeout_closes_and_the_next_call_reconnects() {
    let srv = TestServer::start();
    let proxy = Proxy::start(srv.addr());
    let ch = channel_with(
        &proxy.addr.to_string(),
        opts(&[("grpc.client_idle_timeout_ms", 1000)]),
    );
    let rec = Recorder::new(&ch, false);
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Ok);
    assert_eq!(proxy.connections(), 1);
    rec.wait_for(S::Ready, 5);
    rec.seen.lock().unwrap().clear();
    rec.wait_for(S::Idle, 5);
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Ok);
    assert_eq!(proxy.connections(), 2);
    let v = rec.states();
    assert_eq!(v[..3], [S::Idle, S::Connecting, S::Ready], "{v:?}");
}

/// A server that answers each call after a delay, and sends GOAWAY after
/// the first request of each connection.
fn goaway_server() -> (RawServer, Arc<AtomicUsize>) {
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = l.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(sock).await else {
                    return;
                };
                let mut first = true;
                while let Some(Ok((req, mut tx))) = conn.accept().await {
                    if first {
                        first = false;
                        conn.graceful_shutdown();
                    }
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        while let Some(Ok(d)) = body.data().await {
                            let _ = body.flow_control().release_capacity(d.len());
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let Ok(mut s) = tx.send_response(grpc_headers(&[]), false) else {
                            return;
                        };
                        let _ = s.send_data(frame(0, b"ok"), false);
                        let _ = s.send_trailers(trailers(&[("grpc-status", "0")]));
                    });
                }
            });
        }
    });
    (RawServer::from_parts(addr, rt), conns)
}

#[test]
fn goaway_lets_accepted_streams_finish_and_moves_new_calls() {
    let (srv, conns) = goaway_server();
    let ch = channel(&srv.addr.to_string());
    let first = ch.start_call("/t/Slow", CallOptions::default()).unwrap();
    block(first.send(b"x", last())).unwrap();
    let m = block(first.recv()).unwrap();
    assert_eq!(
        m,
        Some(Bytes::from_static(b"ok")),
        "the accepted stream finishes"
    );
    assert_code(&block(first.finish()).unwrap(), Code::Ok);
    // New calls after the GOAWAY go to a new connection and succeed.
    for _ in 0..3 {
        let (resp, st) = unary(&ch, "/t/Slow", timeout(5000), b"y");
        assert_code(&st, Code::Ok);
        assert_eq!(resp.unwrap(), Bytes::from_static(b"ok"));
    }
    assert!(conns.load(Ordering::SeqCst) >= 2);
}

#[test]
fn subscribe_unsubscribe_races() {
    let srv = TestServer::start();
    let ch = channel_with(&srv.target(), opts(&[("grpc.client_idle_timeout_ms", 50)]));
    let stop = Arc::new(AtomicBool::new(false));
    // Flip the state continuously: calls reconnect, the idle timer drops.
    let flipper = {
        let (ch, stop) = (ch.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let _ = unary(&ch, EMPTY, timeout(2000), &[]);
                std::thread::sleep(Duration::from_millis(60));
            }
        })
    };
    let violations = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (ch, v, c) = (ch.clone(), violations.clone(), calls.clone());
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let gone = Arc::new(AtomicBool::new(false));
                    let (g, v2, c2) = (gone.clone(), v.clone(), c.clone());
                    let id = ch.subscribe(
                        Arc::new(move |_| {
                            c2.fetch_add(1, Ordering::SeqCst);
                            if g.load(Ordering::SeqCst) {
                                v2.fetch_add(1, Ordering::SeqCst);
                            }
                        }),
                        false,
                    );
                    std::thread::sleep(Duration::from_micros(300));
                    assert!(ch.unsubscribe(id));
                    gone.store(true, Ordering::SeqCst);
                    assert!(!ch.unsubscribe(id));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    flipper.join().unwrap();
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a callback ran after unsubscribe returned"
    );
    assert!(calls.load(Ordering::SeqCst) > 0);
}

#[test]
fn unsubscribe_from_inside_the_callback() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let id_cell = Arc::new(Mutex::new(None::<u64>));
    let count = Arc::new(AtomicUsize::new(0));
    let (ch2, idc, cnt) = (ch.clone(), id_cell.clone(), count.clone());
    let id = ch.subscribe(
        Arc::new(move |_| {
            cnt.fetch_add(1, Ordering::SeqCst);
            if let Some(id) = *idc.lock().unwrap() {
                ch2.unsubscribe(id); // must not deadlock
            }
        }),
        false,
    );
    *id_cell.lock().unwrap() = Some(id);
    assert_eq!(block(ch.wait_for_ready()), S::Ready);
    std::thread::sleep(Duration::from_millis(100));
    let n = count.load(Ordering::SeqCst);
    assert!(n >= 1);
    ch.close();
    std::thread::sleep(Duration::from_millis(100));
    assert!(count.load(Ordering::SeqCst) <= n + 1);
}

/// A hand-written HTTP/2 peer (the h2 crate cannot send GOAWAY debug
/// data): answers the first PING, then sends GOAWAY ENHANCE_YOUR_CALM with
/// "too_many_pings", as servers enforcing ping policy do.
fn ping_policing_server() -> std::net::SocketAddr {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(2) {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let frame = |t: u8, flags: u8, payload: &[u8]| h2_frame(t, flags, 0, payload);
                if !h2_accept_preface(&mut s) {
                    return;
                }
                let mut pings = 0;
                while let Some((h, p)) = h2_read_frame(&mut s) {
                    match (h[3], h[4]) {
                        (4, 0) => {
                            let _ = s.write_all(&frame(4, 1, &[])); // SETTINGS ACK
                        }
                        (6, 0) => {
                            pings += 1;
                            if pings == 1 {
                                let _ = s.write_all(&frame(6, 1, &p)); // PING ACK
                            } else {
                                let mut g = vec![0, 0, 0, 0, 0, 0, 0, 0x0b];
                                g.extend_from_slice(b"too_many_pings");
                                let _ = s.write_all(&frame(7, 0, &g));
                                std::thread::sleep(Duration::from_millis(100));
                                return;
                            }
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn too_many_pings_doubles_the_keepalive_time() {
    let addr = ping_policing_server();
    let ch = channel_with(
        &addr.to_string(),
        opts(&[
            ("grpc.keepalive_time_ms", 100),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]),
    );
    assert_eq!(ch.keepalive_time(), Some(Duration::from_millis(100)));
    let rec = Recorder::new(&ch, true);
    rec.wait_for(S::Ready, 5);
    let end = Instant::now() + Duration::from_secs(5);
    while ch.keepalive_time() != Some(Duration::from_millis(200)) {
        assert!(
            Instant::now() < end,
            "keepalive not doubled: {:?}",
            ch.keepalive_time()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The server's GOAWAY ends the connection: IDLE, not a failure.
    rec.wait_for_after(S::Ready, S::Idle, 5);
    rec.check_legal();
    ch.close();
}
