//! Many backends over real sockets: round_robin over several tonic servers
//! on distinct loopback hosts (127.0.0.1, .2, .3, ...), a server killed and
//! restarted under load, pick_first's failover (refused, black-holed, TLS
//! handshake failure) and shuffleAddressList, the service config's method
//! settings, `ipv6:` and `unix-abstract:` targets. Calls are counted on the
//! servers.
mod support;
use rgrpc_core::channel::ChannelError;
use rgrpc_core::channel::OptionValue;
use rgrpc_core::credentials::{ChannelCredentials, TlsCredentials};
use rgrpc_core::{CallOptions, Channel, ChannelOptions, Code};
use rgrpc_tonic_interop::TlsServerOptions;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::certs::*;
use support::faults::BadListener;
use support::*;

fn server_on(ip: &str, port: Option<u16>) -> TestServer {
    TestServer::start_with(ServerOptions {
        ip: Some(ip.parse::<IpAddr>().unwrap()),
        port,
        ..Default::default()
    })
}

fn ipv4_list(servers: &[&TestServer]) -> String {
    let list: Vec<String> = servers.iter().map(|s| s.addr().to_string()).collect();
    format!("ipv4:{}", list.join(","))
}

/// A unary call that also says where it went.
fn unary_peer(ch: &Channel, opts: CallOptions) -> (Code, Option<String>) {
    let call = ch.start_call(EMPTY, opts).unwrap();
    let r = block(call.send(b"", last()));
    let st = if r.is_ok() {
        drain(&call).1
    } else {
        block(call.finish()).unwrap()
    };
    (st.code(), call.peer().map(str::to_string))
}

#[test]
fn round_robin_spreads_calls_evenly_over_five_hosts() {
    let servers: Vec<TestServer> = [
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
    ]
    .iter()
    .map(|ip| server_on(ip, None))
    .collect();
    let refs: Vec<&TestServer> = servers.iter().collect();
    let ch = channel_with(
        &ipv4_list(&refs),
        opts(&[], &[("grpc.lb_policy_name", "round_robin")]),
    );
    // Wait until every backend is connected, then count 3,000 calls.
    let wfr = || CallOptions {
        wait_for_ready: Some(true),
        ..timeout(10_000)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = HashMap::new();
    while seen.len() < servers.len() {
        assert!(Instant::now() < deadline, "not all backends used: {seen:?}");
        let (code, peer) = unary_peer(&ch, wfr());
        assert_eq!(code, Code::Ok);
        *seen.entry(peer.unwrap()).or_insert(0) += 1;
    }
    let before: Vec<u64> = servers.iter().map(|s| s.requests()).collect();
    let n = 3000;
    for _ in 0..n {
        let (_, st) = unary(&ch, EMPTY, wfr(), b"");
        assert_code(&st, Code::Ok);
    }
    let counts: Vec<u64> = servers
        .iter()
        .zip(&before)
        .map(|(s, b)| s.requests() - b)
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), n);
    let even = n as f64 / servers.len() as f64;
    for c in &counts {
        assert!(
            (*c as f64 - even).abs() <= even * 0.05,
            "uneven spread: {counts:?}"
        );
    }
    println!("round_robin, 3000 calls over 5 hosts: {counts:?}");
}

#[test]
fn round_robin_from_the_service_config_and_peers() {
    let a = server_on("127.0.0.2", None);
    let b = server_on("127.0.0.3", None);
    let sc = r#"{"loadBalancingConfig": [{"grpclb": {}}, {"round_robin": {}}]}"#;
    let ch = channel_with(
        &ipv4_list(&[&a, &b]),
        opts(&[], &[("grpc.service_config", sc)]),
    );
    let wfr = CallOptions {
        wait_for_ready: Some(true),
        ..timeout(10_000)
    };
    block(ch.wait_for_ready());
    // Both get calls once both are READY (round_robin, not pick_first).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut peers = std::collections::HashSet::new();
    while peers.len() < 2 {
        assert!(Instant::now() < deadline, "{peers:?}");
        let (code, peer) = unary_peer(&ch, wfr.clone());
        assert_eq!(code, Code::Ok);
        peers.insert(peer.unwrap());
    }
    assert!(peers.contains(&format!("ipv4:{}", a.addr())), "{peers:?}");
    assert!(peers.contains(&format!("ipv4:{}", b.addr())), "{peers:?}");
    // A list with no policy rgrpc has is refused, naming them.
    let bad = r#"{"loadBalancingConfig": [{"grpclb": {}}]}"#;
    let mut o = ChannelOptions::default();
    match o.set("grpc.service_config", OptionValue::Str(bad.into())) {
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains("grpclb") && m.contains("round_robin"), "{m}");
        }
        Ok(()) => panic!("accepted {bad}"),
    }
}

#[test]
fn a_killed_backend_only_fails_its_own_calls_and_comes_back() {
    let servers: Vec<TestServer> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| server_on(ip, None))
        .collect();
    let refs: Vec<&TestServer> = servers.iter().collect();
    let target = ipv4_list(&refs);
    let ch = channel_with(
        &target,
        opts(
            &[
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 400),
            ],
            &[("grpc.lb_policy_name", "round_robin")],
        ),
    );
    let wfr = || CallOptions {
        wait_for_ready: Some(true),
        ..timeout(10_000)
    };
    // Every backend READY.
    let deadline = Instant::now() + Duration::from_secs(10);
    while servers.iter().any(|s| s.requests() == 0) {
        assert!(Instant::now() < deadline);
        assert_eq!(unary_peer(&ch, wfr()).0, Code::Ok);
    }
    let mut servers = servers;
    let victim = servers.remove(1);
    let victim_addr = victim.addr();
    let victim_peer = format!("ipv4:{victim_addr}");
    // Load from four threads, half wait-for-ready, half fail-fast, while
    // the victim is killed. A call may fail only if it was on the victim
    // when it died (UNAVAILABLE, or CANCELLED for a stream the dying server
    // reset); calls started after the client saw the kill (100 ms) all
    // succeed on the others, wait-for-ready or not.
    let stop = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let killed_at_ms = Arc::new(AtomicUsize::new(usize::MAX));
    let mut threads = Vec::new();
    for t in 0..4 {
        let ch = ch.clone();
        let stop = stop.clone();
        let killed_at_ms = killed_at_ms.clone();
        let peer = victim_peer.clone();
        threads.push(std::thread::spawn(move || {
            let mut failed = 0;
            let mut calls = 0;
            while stop.load(Ordering::SeqCst) == 0 && calls < 5000 {
                calls += 1;
                let wait = t % 2 == 0;
                let o = CallOptions {
                    wait_for_ready: Some(wait),
                    ..timeout(10_000)
                };
                let started_ms = t0.elapsed().as_millis() as usize;
                let (code, got) = unary_peer(&ch, o);
                if code == Code::Ok {
                    continue;
                }
                failed += 1;
                assert!(
                    matches!(code, Code::Unavailable | Code::Cancelled),
                    "{code:?}"
                );
                assert_eq!(
                    got.as_deref(),
                    Some(peer.as_str()),
                    "a call (wait_for_ready {wait}) failed on a live backend"
                );
                let killed = killed_at_ms.load(Ordering::SeqCst);
                assert!(
                    started_ms < killed.saturating_add(100),
                    "a call (wait_for_ready {wait}) started {} ms after the kill failed",
                    started_ms.saturating_sub(killed)
                );
            }
            (calls, failed)
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    killed_at_ms.store(t0.elapsed().as_millis() as usize, Ordering::SeqCst);
    victim.kill();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(1, Ordering::SeqCst);
    let mut total = 0;
    let mut failed = 0;
    for t in threads {
        let (c, f) = t.join().unwrap();
        total += c;
        failed += f;
    }
    println!("{total} calls under the kill, {failed} failed, all in flight on the killed backend");
    // The survivors take every call now.
    let before: Vec<u64> = servers.iter().map(|s| s.requests()).collect();
    for _ in 0..100 {
        assert_eq!(unary_peer(&ch, CallOptions::default()).0, Code::Ok);
    }
    let after: u64 = servers.iter().map(|s| s.requests()).sum();
    assert_eq!(after - before.iter().sum::<u64>(), 100);
    // Restarted on its port: calls reach it again within its backoff.
    let back = server_on(&victim_addr.ip().to_string(), Some(victim_addr.port()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while back.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the restarted backend got no calls"
        );
        assert_eq!(unary_peer(&ch, wfr()).0, Code::Ok);
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn round_robin_state_is_the_aggregate() {
    use rgrpc_core::channel::ConnectivityState as S;
    // Nothing listens: TRANSIENT_FAILURE, with the reason; fail-fast calls
    // fail at once.
    let dead1 = BadListener::start(false);
    let dead2 = BadListener::start(false);
    let target = format!("ipv4:{},{}", dead1.addr, dead2.addr);
    let ch = channel_with(
        &target,
        opts(&[], &[("grpc.lb_policy_name", "round_robin")]),
    );
    assert!(matches!(ch.state(true), S::Idle | S::Connecting));
    let deadline = Instant::now() + Duration::from_secs(5);
    while ch.state(false) != S::TransientFailure {
        assert!(Instant::now() < deadline, "{}", ch.state(false));
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, st) = unary(&ch, EMPTY, timeout(2000), b"");
    assert_code(&st, Code::Unavailable);
    assert!(st.message().contains("all backends failing"), "{st}");
    // One live backend among dead ones: READY.
    let live = server_on("127.0.0.2", None);
    let target = format!("ipv4:{},{}", dead1.addr, live.addr());
    let ch = channel_with(
        &target,
        opts(&[], &[("grpc.lb_policy_name", "round_robin")]),
    );
    assert_eq!(block(ch.wait_for_ready()), S::Ready);
    for _ in 0..20 {
        assert_eq!(
            unary_peer(&ch, CallOptions::default()),
            (Code::Ok, Some(format!("ipv4:{}", live.addr())))
        );
    }
}

#[test]
fn pick_first_fails_over_refused_black_holed_and_hanging_up_addresses() {
    let live = server_on("127.0.0.3", None);
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_addr = refused.local_addr().unwrap();
    drop(refused);
    let hole = BadListener::start(true);
    let closer = BadListener::start(false);
    // Refused, then black-holed, then one that accepts and hangs up (the
    // HTTP/2 handshake fails), then the live one: the call goes to the live
    // one after about 250 ms (the black hole's delay), not after the 20 s
    // connect timeout.
    let target = format!(
        "ipv4:{},{},{},{}",
        refused_addr,
        hole.addr,
        closer.addr,
        live.addr()
    );
    let ch = channel_with(&target, ChannelOptions::default());
    let t0 = Instant::now();
    let (code, peer) = unary_peer(
        &ch,
        CallOptions {
            wait_for_ready: Some(true),
            ..timeout(10_000)
        },
    );
    let took = t0.elapsed();
    assert_eq!(code, Code::Ok);
    assert_eq!(peer, Some(format!("ipv4:{}", live.addr())));
    assert_eq!(hole.accepted(), 1, "the black hole was tried once");
    assert_eq!(closer.accepted(), 1, "the hang-up was tried once");
    assert!(
        took >= Duration::from_millis(240) && took < Duration::from_millis(3000),
        "took {took:?}"
    );
    println!("pick_first past a refused, a black-holed and a hanging-up address: {took:?}");
    // Later calls stay on the chosen one.
    for _ in 0..10 {
        assert_eq!(unary_peer(&ch, CallOptions::default()).1, peer);
    }
}

#[test]
fn pick_first_fails_over_a_tls_handshake_failure() {
    const HOST: &str = "foo.test.google.fr";
    let trusted = Ca::new("trusted");
    let other = Ca::new("other");
    let tls_server = |ca: &Ca, ip: &str| {
        let pem = ca.server(&[HOST], false, false);
        TestServer::start_with(ServerOptions {
            ip: Some(ip.parse().unwrap()),
            tls: Some(TlsServerOptions {
                cert_chain_pem: pem.cert.clone(),
                key_pem: pem.key.clone(),
                client_ca_pem: None,
                no_alpn: false,
            }),
            ..Default::default()
        })
    };
    let untrusted = tls_server(&other, "127.0.0.2");
    let good = tls_server(&trusted, "127.0.0.3");
    let creds =
        ChannelCredentials::tls(TlsCredentials::new(Some(&trusted.cert_pem), None).unwrap());
    let target = format!("ipv4:{},{}", untrusted.addr(), good.addr());
    let ch = Channel::with_credentials(
        &target,
        creds,
        opts(&[], &[("grpc.ssl_target_name_override", HOST)]),
    )
    .unwrap();
    let (code, peer) = unary_peer(&ch, timeout(10_000));
    assert_eq!(code, Code::Ok);
    assert_eq!(peer, Some(format!("ipv4:{}", good.addr())));
    // Only the untrusted one: the TLS failure is the status, as it is.
    let ch = Channel::with_credentials(
        &format!("ipv4:{}", untrusted.addr()),
        ChannelCredentials::tls(TlsCredentials::new(Some(&trusted.cert_pem), None).unwrap()),
        opts(&[], &[("grpc.ssl_target_name_override", HOST)]),
    )
    .unwrap();
    let (_, st) = unary(&ch, EMPTY, timeout(5000), b"");
    assert_code(&st, Code::Unavailable);
    assert!(st.message().contains("certificate"), "{st}");
}

#[test]
fn shuffle_address_list_spreads_first_picks_over_channels() {
    let servers: Vec<TestServer> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| server_on(ip, None))
        .collect();
    let refs: Vec<&TestServer> = servers.iter().collect();
    let target = ipv4_list(&refs);
    let first_peers = |sc: Option<&str>| {
        let mut peers = std::collections::HashSet::new();
        for _ in 0..12 {
            let o = match sc {
                Some(sc) => opts(&[], &[("grpc.service_config", sc)]),
                None => ChannelOptions::default(),
            };
            let ch = channel_with(&target, o);
            let (code, peer) = unary_peer(&ch, timeout(5000));
            assert_eq!(code, Code::Ok);
            peers.insert(peer.unwrap());
        }
        peers
    };
    // In order without the flag: always the first.
    let plain = first_peers(None);
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert!(plain.contains(&format!("ipv4:{}", servers[0].addr())));
    // Shuffled: 12 channels over 3 addresses all on one is (1/3)^11.
    let sc = r#"{"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": true}}]}"#;
    let shuffled = first_peers(Some(sc));
    assert!(shuffled.len() >= 2, "{shuffled:?}");
}

#[test]
fn service_config_method_settings_take_effect() {
    let srv = TestServer::start();
    let sc = r#"{
      "methodConfig": [
        {"name": [{"service": "grpc.testing.TestService", "method": "UnaryCall"}],
         "timeout": "0.3s", "maxRequestMessageBytes": 1000, "maxResponseMessageBytes": 2000},
        {"name": [{"service": "grpc.testing.TestService"}], "waitForReady": true},
        {"name": [{}], "timeout": "30s"}
      ]}"#;
    let ch = channel_with(&srv.target(), opts(&[], &[("grpc.service_config", sc)]));
    // timeout: the smaller of the config's and the call's.
    let slow = || md_opts(&[("x-rgrpc-sleep-ms", b"2000")]);
    let t0 = Instant::now();
    let (_, st) = unary(&ch, UNARY, slow(), &simple(1, 1));
    assert_code(&st, Code::DeadlineExceeded);
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let mut short = slow();
    short.deadline = Some(tokio::time::Instant::now() + Duration::from_millis(100));
    let t0 = Instant::now();
    let (_, st) = unary(&ch, UNARY, short, &simple(1, 1));
    assert_code(&st, Code::DeadlineExceeded);
    assert!(
        t0.elapsed() < Duration::from_millis(280),
        "{:?}",
        t0.elapsed()
    );
    // Message limits of the method: request over 1000 bytes, response
    // over 2000 bytes: RESOURCE_EXHAUSTED; within them: OK.
    let (_, st) = unary(&ch, UNARY, timeout(5000), &simple(900, 1500));
    assert_code(&st, Code::Ok);
    let (_, st) = unary(&ch, UNARY, timeout(5000), &simple(1200, 10));
    assert_code(&st, Code::ResourceExhausted);
    let (_, st) = unary(&ch, UNARY, timeout(5000), &simple(10, 3000));
    assert_code(&st, Code::ResourceExhausted);
    // Another method of the service has no limit.
    let (_, st) = unary(&ch, EMPTY, timeout(5000), b"");
    assert_code(&st, Code::Ok);

    // waitForReady from the service's entry: against a refused port a call
    // waits for its deadline instead of failing fast; a call's own choice wins.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = refused.local_addr().unwrap();
    drop(refused);
    let ch = channel_with(&addr.to_string(), opts(&[], &[("grpc.service_config", sc)]));
    let (_, st) = unary(&ch, EMPTY, timeout(400), b"");
    assert_code(&st, Code::DeadlineExceeded);
    let own = CallOptions {
        wait_for_ready: Some(false),
        ..timeout(5000)
    };
    let (_, st) = unary(&ch, EMPTY, own, b"");
    assert_code(&st, Code::Unavailable);
}

#[test]
fn an_invalid_service_config_fails_channel_creation_with_its_path() {
    let o = ChannelOptions {
        service_config: Some(r#"{"methodConfig": [{"name": [{}], "timeout": 5}]}"#.into()),
        ..Default::default()
    };
    match Channel::new("127.0.0.1:1", o) {
        Err(ChannelError::InvalidServiceConfig(m)) => {
            assert!(m.contains("$.methodConfig[0].timeout"), "{m}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn ipv6_and_unix_abstract_targets() {
    let v6 = server_on("::1", None);
    let ch = channel(&format!("ipv6:[::1]:{}", v6.addr().port()));
    let (code, peer) = unary_peer(&ch, timeout(5000));
    assert_eq!(code, Code::Ok);
    assert_eq!(peer, Some(format!("ipv6:[::1]:{}", v6.addr().port())));

    // An abstract socket: the interop service on a listener of its own.
    use std::os::linux::net::SocketAddrExt;
    let name = format!("rgrpc-test-{}", std::process::id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let l = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    l.set_nonblocking(true).unwrap();
    let server = rt.spawn(async move {
        let l = tokio::net::UnixListener::from_std(l).unwrap();
        rgrpc_tonic_interop::serve_unix(l, ServerOptions::default()).await
    });
    let ch = channel(&format!("unix-abstract:{name}"));
    let (code, peer) = unary_peer(&ch, timeout(5000));
    assert_eq!(code, Code::Ok);
    assert_eq!(peer, Some(format!("unix-abstract:{name}")));
    server.abort();
}

#[test]
fn a_thousand_address_list_is_cheap_to_create_and_pick() {
    // 999 refused addresses around one live one, with round_robin: the
    // channel is made at once and every call goes to the live one.
    let live = server_on("127.0.0.2", None);
    let mut list: Vec<String> = (0..999)
        .map(|i| format!("127.0.{}.{}:1", 10 + i / 250, 1 + i % 250))
        .collect();
    list.insert(500, live.addr().to_string());
    let target = format!("ipv4:{}", list.join(","));
    let t0 = Instant::now();
    let ch = channel_with(
        &target,
        opts(&[], &[("grpc.lb_policy_name", "round_robin")]),
    );
    let made = t0.elapsed();
    assert!(made < Duration::from_millis(500), "{made:?}");
    let wfr = CallOptions {
        wait_for_ready: Some(true),
        ..timeout(20_000)
    };
    let (code, peer) = unary_peer(&ch, wfr);
    assert_eq!(code, Code::Ok);
    assert_eq!(peer, Some(format!("ipv4:{}", live.addr())));
    println!("channel over 1000 addresses made in {made:?}");
}

#[test]
fn the_snapshot_reflects_a_killed_backend() {
    let servers: Vec<TestServer> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| server_on(ip, None))
        .collect();
    let refs: Vec<&TestServer> = servers.iter().collect();
    let target = ipv4_list(&refs);
    let ch = channel_with(
        &target,
        opts(
            &[("grpc.initial_reconnect_backoff_ms", 5000)],
            &[("grpc.lb_policy_name", "round_robin")],
        ),
    );
    let snap = || -> serde_json::Value { serde_json::from_str(&ch.snapshot_json()).unwrap() };
    let s = snap();
    assert_eq!(s["state"], "IDLE");
    assert_eq!(s["policy"], "round_robin");
    assert_eq!(s["target"], target.as_str());
    assert_eq!(s["calls"]["started"], 0);
    // Calls until all three are used, plus one that fails (bad method).
    let wfr = || CallOptions {
        wait_for_ready: Some(true),
        ..timeout(10_000)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0u64;
    while servers.iter().any(|s| s.requests() == 0) {
        assert!(Instant::now() < deadline);
        assert_eq!(unary_peer(&ch, wfr()).0, Code::Ok);
        n += 1;
    }
    let (_, st) = unary(&ch, "/grpc.testing.TestService/NoSuchMethod", wfr(), b"");
    assert_code(&st, Code::Unimplemented);
    let s = snap();
    assert_eq!(s["state"], "READY");
    assert_eq!(s["calls"]["started"], n + 1);
    assert_eq!(s["calls"]["succeeded"], n);
    assert_eq!(s["calls"]["failed"], 1);
    assert_eq!(s["calls"]["active"], 0);
    assert_eq!(s["streams_open"], 0);
    assert_eq!(s["resolution"]["count"], 1);
    let peers: Vec<String> = servers
        .iter()
        .map(|s| format!("ipv4:{}", s.addr()))
        .collect();
    assert_eq!(s["resolution"]["addresses"], serde_json::json!(peers));
    let subs = s["subchannels"].as_array().unwrap();
    assert_eq!(subs.len(), 3);
    for (sc, peer) in subs.iter().zip(&peers) {
        assert_eq!(sc["address"], peer.as_str());
        assert_eq!(sc["state"], "READY");
        assert_eq!(sc["connect_attempts"], 1);
        assert_eq!(sc["breaks"], 0);
    }
    // A stream open while the snapshot is taken.
    let call = ch.start_call(SERVER_STREAM, wfr()).unwrap();
    block(call.send(&stream_req(&[1; 3], 200_000), last())).unwrap();
    assert!(block(call.recv()).unwrap().is_some());
    assert_eq!(snap()["streams_open"], 1);
    let (_, st) = drain(&call);
    assert_code(&st, Code::Ok);
    assert_eq!(snap()["streams_open"], 0);

    // Kill the second: its subchannel shows the break and its failure.
    let mut servers = servers;
    servers.remove(1).kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = snap();
        let sc = &s["subchannels"][1];
        if sc["breaks"] == 1 && sc["state"] != "READY" && sc["connect_failures"].as_u64() >= Some(1)
        {
            assert!(
                sc["last_failure"].as_str().is_some_and(|m| !m.is_empty()),
                "{sc}"
            );
            assert_eq!(s["subchannels"][0]["state"], "READY");
            assert_eq!(s["state"], "READY");
            println!("snapshot after the kill: {s}");
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
