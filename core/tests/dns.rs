//! Name resolution against a real DNS server on loopback: Debian's dnsmasq,
//! started by the test on a free port, serving a hosts file it reloads on
//! SIGHUP. The channel asks it through the `dns://127.0.0.1:PORT/name:port`
//! form. Its answer changes mid-test: after the re-resolution (asked for
//! when a connection fails, no sooner than
//! `grpc.dns_min_time_between_resolutions_ms`) the channel uses the new
//! servers and stops using the removed ones. A name it does not know puts
//! the channel in TRANSIENT_FAILURE naming the target; wait-for-ready calls
//! wait for a later answer. A DNS server that never answers holds no call
//! past its deadline.
mod support;
use rgrpc_core::channel::ConnectivityState as S;
use rgrpc_core::{CallOptions, Channel, Code};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// dnsmasq answering from `hosts` on 127.0.0.1:port, for `rgrpc.test`
/// only (other names: NXDOMAIN; no upstream servers).
struct Dnsmasq {
    child: Child,
    port: u16,
    hosts: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dnsmasq_binary() -> PathBuf {
    for p in ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("dnsmasq is not installed: apt-get install dnsmasq-base (scripts/deps.sh does)");
}

impl Dnsmasq {
    fn start(entries: &[(&str, &str)]) -> Dnsmasq {
        let dir = std::env::temp_dir().join(format!(
            "rgrpc-dns-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = TempDir(dir);
        let hosts = dir.0.join("hosts");
        write_hosts(&hosts, entries);
        for _ in 0..20 {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(dnsmasq_binary())
                .args([
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    "--listen-address=127.0.0.1",
                    "--user=root",
                    "--local=/rgrpc.test/",
                    "--local-ttl=0",
                    "--log-queries",
                    "--log-facility=-",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--addn-hosts={}", hosts.display()))
                .arg(format!("--pid-file={}", dir.0.join("pid").display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start dnsmasq");
            // Up when it answers over TCP (it serves TCP beside UDP).
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Dnsmasq {
                        child,
                        port,
                        hosts,
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken: another one
                }
                assert!(Instant::now() < deadline, "dnsmasq did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("dnsmasq did not start on any port");
    }

    /// New answers: rewrite the hosts file and SIGHUP.
    fn set(&self, entries: &[(&str, &str)]) {
        write_hosts(&self.hosts, entries);
        let r = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(r.success());
        // dnsmasq rereads the file on the signal; give it a moment.
        std::thread::sleep(Duration::from_millis(200));
    }

    fn target(&self, name: &str, port: u16) -> String {
        format!("dns://127.0.0.1:{}/{name}:{port}", self.port)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_hosts(path: &std::path::Path, entries: &[(&str, &str)]) {
    let text: String = entries
        .iter()
        .map(|(ip, name)| format!("{ip} {name}\n"))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn server_on(ip: &str, port: u16) -> TestServer {
    TestServer::start_with(ServerOptions {
        ip: Some(ip.parse::<IpAddr>().unwrap()),
        port: Some(port),
        ..Default::default()
    })
}

fn wfr(ms: u64) -> CallOptions {
    CallOptions {
        wait_for_ready: Some(true),
        ..timeout(ms)
    }
}

#[test]
fn the_channel_follows_a_changing_answer() {
    const NAME: &str = "svc.rgrpc.test";
    // Three servers on one port of three loopback hosts.
    let a = TestServer::start();
    let port = a.addr().port();
    let b = server_on("127.0.0.2", port);
    let c = server_on("127.0.0.3", port);
    let dns = Dnsmasq::start(&[("127.0.0.1", NAME), ("127.0.0.2", NAME)]);
    let made = Instant::now();
    let ch = channel_with(
        &dns.target(NAME, port),
        opts(
            &[
                ("grpc.dns_min_time_between_resolutions_ms", 2000),
                ("grpc.initial_reconnect_backoff_ms", 100),
            ],
            &[("grpc.lb_policy_name", "round_robin")],
        ),
    );
    assert_eq!(ch.authority(), format!("{NAME}:{port}"));
    // Both answers get calls; the third host none.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.requests() == 0 || b.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "{} {}",
            a.requests(),
            b.requests()
        );
        let (_, st) = unary(&ch, EMPTY, wfr(5000), b"");
        assert_code(&st, Code::Ok);
    }
    assert_eq!(c.requests(), 0);

    // A server stream on a, still running when a leaves the answer: it
    // finishes normally (a removed address's connection is retired, not cut).
    let on_a = format!("ipv4:127.0.0.1:{port}");
    let mut streaming = None;
    for _ in 0..20 {
        let call = ch.start_call(SERVER_STREAM, wfr(20_000)).unwrap();
        block(call.send(&stream_req(&[10; 40], 100_000), last())).unwrap();
        assert!(block(call.recv()).unwrap().is_some());
        if call.peer() == Some(on_a.as_str()) {
            streaming = Some(call);
            break;
        }
        drop(call);
    }
    let streaming = streaming.expect("no stream landed on a");

    // The answer becomes b and c; b restarts (its connection fails, which
    // asks for a new resolution, rate-limited to 2 s after the first).
    dns.set(&[("127.0.0.2", NAME), ("127.0.0.3", NAME)]);
    b.kill();
    // Calls sent on b's connection before the client saw it close would
    // fail (not this test's subject): give the client a moment to see it.
    std::thread::sleep(Duration::from_millis(200));
    let b = server_on("127.0.0.2", port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.requests() == 0 {
        assert!(Instant::now() < deadline, "the new server got no calls");
        let (_, st) = unary(&ch, EMPTY, wfr(5000), b"");
        assert_code(&st, Code::Ok);
    }
    let switched = made.elapsed();
    assert!(
        switched >= Duration::from_millis(1900),
        "re-resolved after {switched:?}, sooner than the 2 s minimum"
    );
    println!("new answer used {switched:?} after the channel was made");
    // a is still up but no longer in the answer: it gets nothing more.
    let a_before = a.requests();
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the restarted server got no calls"
        );
        let (_, st) = unary(&ch, EMPTY, wfr(5000), b"");
        assert_code(&st, Code::Ok);
    }
    for _ in 0..50 {
        let (_, st) = unary(&ch, EMPTY, wfr(5000), b"");
        assert_code(&st, Code::Ok);
    }
    assert_eq!(a.requests(), a_before, "a removed server still got calls");
    let (msgs, st) = drain(&streaming);
    assert_code(&st, Code::Ok);
    assert_eq!(msgs.len(), 39, "the stream on the removed server was cut");
}

#[test]
fn an_unknown_name_fails_naming_the_target_until_it_resolves() {
    const NAME: &str = "late.rgrpc.test";
    let srv = TestServer::start();
    let port = srv.addr().port();
    let dns = Dnsmasq::start(&[("127.0.0.9", "other.rgrpc.test")]);
    let target = dns.target(NAME, port);
    let ch: Channel = channel(&target);
    ch.state(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ch.state(false) != S::TransientFailure {
        assert!(Instant::now() < deadline, "{}", ch.state(false));
        std::thread::sleep(Duration::from_millis(10));
    }
    // Fail-fast: UNAVAILABLE naming the target.
    let (_, st) = unary(&ch, EMPTY, timeout(5000), b"");
    assert_code(&st, Code::Unavailable);
    assert!(st.message().contains(&format!("{NAME}:{port}")), "{st}");
    assert!(st.message().contains("no addresses"), "{st}");
    // Wait-for-ready: waits, and succeeds once the name resolves (the
    // resolver retries on its backoff, starting at 1 s).
    let ch2 = ch.clone();
    let waiter = std::thread::spawn(move || {
        let t0 = Instant::now();
        let (_, st) = unary(&ch2, EMPTY, wfr(15_000), b"");
        (st, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    dns.set(&[("127.0.0.1", NAME)]);
    let (st, took) = waiter.join().unwrap();
    assert_code(&st, Code::Ok);
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert_eq!(srv.requests(), 1);
}

#[test]
fn a_silent_dns_server_never_holds_a_call_past_its_deadline() {
    // A DNS "server" that takes queries over UDP and TCP and never answers.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        tcp.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok((s, _)) = tcp.accept() {
                conns.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(udp);
    });
    let ch = channel(&format!("dns://127.0.0.1:{port}/slow.rgrpc.test:1"));
    for wait_for_ready in [false, true] {
        let t0 = Instant::now();
        let o = CallOptions {
            wait_for_ready: Some(wait_for_ready),
            ..timeout(300)
        };
        let (_, st) = unary(&ch, EMPTY, o, b"");
        let took = t0.elapsed();
        assert_code(&st, Code::DeadlineExceeded);
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(1000),
            "{took:?}"
        );
    }
    held.join().unwrap();
}
