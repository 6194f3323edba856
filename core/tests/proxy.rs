//! HTTP CONNECT proxies against a real one, tinyproxy (Debian package
//! `tinyproxy`; `scripts/deps.sh` installs it): plaintext and TLS calls
//! through it, `no_proxy` and `grpc.enable_http_proxy` = 0 bypassing it,
//! basic authentication right, wrong and missing, the `http_proxy` environment
//! variable end to end, an unreachable proxy.
//!
//! The proxy settings come from the environment too, so every test holds
//! one lock and starts by clearing the variables rgrpc reads: the
//! machine's own proxy settings cannot change an outcome, and the tests
//! that set a variable do it alone.
mod support;
use rgrpc_core::channel::{ChannelError, OptionValue};
use rgrpc_core::credentials::{ChannelCredentials, TlsCredentials};
use rgrpc_core::{Channel, ChannelOptions, Code};
use rgrpc_tonic_interop::TlsServerOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::certs::Ca;
use support::*;

/// The variables rgrpc reads for its proxy (C-core's names).
const PROXY_VARS: [&str; 5] = [
    "grpc_proxy",
    "https_proxy",
    "http_proxy",
    "no_grpc_proxy",
    "no_proxy",
];

static ENV: Mutex<()> = Mutex::new(());

/// The lock every test holds, with the proxy variables cleared.
fn env_lock() -> MutexGuard<'static, ()> {
    let g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    for k in PROXY_VARS {
        std::env::remove_var(k);
    }
    g
}

/// Environment variables set for a scope (under [`env_lock`]), removed on drop.
struct EnvVars(Vec<&'static str>);

impl EnvVars {
    fn set(pairs: &[(&'static str, &str)]) -> EnvVars {
        for (k, v) in pairs {
            std::env::set_var(k, v);
        }
        EnvVars(pairs.iter().map(|(k, _)| *k).collect())
    }
}

impl Drop for EnvVars {
    fn drop(&mut self) {
        for k in &self.0 {
            std::env::remove_var(k);
        }
    }
}

/// A tinyproxy process on a loopback port, with its own config and log
/// in a temporary directory; killed on drop.
struct Tinyproxy {
    child: Child,
    dir: PathBuf,
    port: u16,
}

fn find_tinyproxy() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join("tinyproxy"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Tinyproxy {
    /// Starts tinyproxy; with `basic_auth`, it asks for that user and
    /// password. Fails the test when tinyproxy is not installed.
    fn start(basic_auth: Option<(&str, &str)>) -> Tinyproxy {
        let bin = find_tinyproxy().unwrap_or_else(|| {
            panic!(
                "tinyproxy is not installed: the proxy tests need a real HTTP CONNECT proxy. \
                 Install it with `apt-get install tinyproxy` (scripts/deps.sh does)"
            )
        });
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rgrpc-tinyproxy-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A port picked free can be taken before tinyproxy binds it: retry.
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.join("tinyproxy.conf");
            let mut text = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\n\
                 MaxClients 100\nAllow 127.0.0.1\n",
                dir.join("tinyproxy.log").display()
            );
            // No ConnectPort line: CONNECT to every port is allowed.
            if let Some((user, pass)) = basic_auth {
                text.push_str(&format!("BasicAuth {user} {pass}\n"));
            }
            std::fs::write(&conf, text).unwrap();
            let out = std::fs::File::create(dir.join("stderr.txt")).unwrap();
            let mut child = Command::new(&bin)
                .arg("-d")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let until = Instant::now() + Duration::from_secs(10);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Tinyproxy { child, dir, port };
                }
                if child.try_wait().unwrap().is_some() || Instant::now() > until {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "tinyproxy did not start listening; its output: {}; its log: {}",
            read(&dir.join("stderr.txt")),
            read(&dir.join("tinyproxy.log"))
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests tinyproxy logged (`CONNECT host:port HTTP/1.1`).
    fn requests(&self) -> Vec<String> {
        read(&self.dir.join("tinyproxy.log"))
            .lines()
            .filter_map(|l| l.split_once("Request (file descriptor "))
            .filter_map(|(_, r)| r.split_once("): ").map(|(_, req)| req.to_string()))
            .collect()
    }

    /// Waits briefly for `req` in the log (it is written before the proxy
    /// connects onwards, so it is there once a call through it succeeded).
    fn assert_logged(&self, req: &str) {
        let until = Instant::now() + Duration::from_secs(3);
        while !self.requests().iter().any(|r| r == req) {
            assert!(
                Instant::now() < until,
                "tinyproxy did not log {req:?}; it logged {:?}",
                self.requests()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn proxy_opts(url: &str) -> ChannelOptions {
    let mut o = ChannelOptions::default();
    o.set("grpc.http_proxy", OptionValue::Str(url.into()))
        .unwrap();
    o
}

fn call_ok(ch: &Channel) {
    let (resp, st) = unary(ch, UNARY, timeout(10_000), &simple(10, 20));
    assert_code(&st, Code::Ok);
    assert_eq!(body_len_simple(&resp.unwrap()), 20);
}

#[test]
fn plaintext_call_through_the_proxy() {
    let _env = env_lock();
    let proxy = Tinyproxy::start(None);
    let srv = TestServer::start();
    let ch = channel_with(&srv.target(), proxy_opts(&proxy.url()));
    call_ok(&ch);
    call_ok(&ch);
    // One tunnel to the server's address, used by both calls.
    let req = format!("CONNECT {} HTTP/1.1", srv.target());
    proxy.assert_logged(&req);
    assert_eq!(proxy.requests(), vec![req]);
}

#[test]
fn tls_call_through_the_proxy() {
    let _env = env_lock();
    let proxy = Tinyproxy::start(None);
    let ca = Ca::new("proxy test CA");
    let pem = ca.server(&["localhost"], false, false);
    let srv = TestServer::start_with(ServerOptions {
        tls: Some(TlsServerOptions {
            cert_chain_pem: pem.cert,
            key_pem: pem.key,
            client_ca_pem: None,
            no_alpn: false,
        }),
        ..Default::default()
    });
    // A name: the proxy resolves it; TLS inside the tunnel checks the
    // server's name, not the proxy's.
    let target = format!("localhost:{}", srv.addr().port());
    let creds = ChannelCredentials::tls(TlsCredentials::new(Some(&ca.cert_pem), None).unwrap());
    let ch = Channel::with_credentials(&target, creds, proxy_opts(&proxy.url())).unwrap();
    call_ok(&ch);
    proxy.assert_logged(&format!("CONNECT {target} HTTP/1.1"));
}

#[test]
fn no_proxy_covering_the_target_bypasses_the_proxy() {
    let _env = env_lock();
    let proxy = Tinyproxy::start(None);
    let srv = TestServer::start();
    {
        // A CIDR block covers 127.0.0.1.
        let _vars = EnvVars::set(&[("no_proxy", "example.com, 127.0.0.0/8")]);
        let ch = channel_with(&srv.target(), proxy_opts(&proxy.url()));
        call_ok(&ch);
    }
    {
        // no_grpc_proxy comes first: this one names another host.
        let _vars = EnvVars::set(&[("no_grpc_proxy", "example.com"), ("no_proxy", "127.0.0.1")]);
        let ch = channel_with(&srv.target(), proxy_opts(&proxy.url()));
        call_ok(&ch);
    }
    assert_eq!(
        proxy.requests(),
        vec![format!("CONNECT {} HTTP/1.1", srv.target())],
        "only the second channel goes through the proxy"
    );
}

#[test]
fn basic_auth_with_the_right_password() {
    let _env = env_lock();
    let proxy = Tinyproxy::start(Some(("user", "pass")));
    let srv = TestServer::start();
    // %70 is 'p': the user info is percent-decoded before encoding.
    let url = format!("http://user:%70ass@127.0.0.1:{}", proxy.port);
    let ch = channel_with(&srv.target(), proxy_opts(&url));
    call_ok(&ch);
    proxy.assert_logged(&format!("CONNECT {} HTTP/1.1", srv.target()));
}

/// tinyproxy answers 407 when the credentials are missing and 401 when
/// they are wrong (1.11); either way the call fails UNAVAILABLE with the
/// proxy's answer.
#[test]
fn missing_or_wrong_credentials_fail_unavailable_with_the_proxys_answer() {
    let _env = env_lock();
    let proxy = Tinyproxy::start(Some(("user", "pass")));
    let srv = TestServer::start();
    for (url, answer) in [
        (proxy.url(), "407 Proxy Authentication Required"),
        (
            format!("http://user:wrong@127.0.0.1:{}", proxy.port),
            "401 Unauthorized",
        ),
    ] {
        let ch = channel_with(&srv.target(), proxy_opts(&url));
        let (_, st) = unary(&ch, UNARY, timeout(10_000), &simple(1, 1));
        assert_code(&st, Code::Unavailable);
        let m = st.message();
        assert!(m.contains("proxy") && m.contains(answer), "{m}");
        assert!(m.contains(&srv.target()), "names the CONNECT target: {m}");
    }
}

#[test]
fn enable_http_proxy_0_bypasses_the_proxy() {
    let _env = env_lock();
    let proxy = Tinyproxy::start(None);
    let srv = TestServer::start();
    let mut o = proxy_opts(&proxy.url());
    o.set("grpc.enable_http_proxy", OptionValue::Int(0))
        .unwrap();
    // The environment's proxy is off too.
    let _vars = EnvVars::set(&[("grpc_proxy", &proxy.url())]);
    call_ok(&channel_with(&srv.target(), o));
    assert_eq!(proxy.requests(), Vec::<String>::new());
}

#[test]
fn the_http_proxy_environment_variable_end_to_end() {
    let _env = env_lock();
    let proxy = Tinyproxy::start(None);
    let srv = TestServer::start();
    let ch = {
        let _vars = EnvVars::set(&[("http_proxy", &proxy.url())]);
        channel(&srv.target())
    };
    // Read when the channel is created, not later.
    call_ok(&ch);
    proxy.assert_logged(&format!("CONNECT {} HTTP/1.1", srv.target()));
    // A malformed value is a channel creation error naming the variable.
    let _vars = EnvVars::set(&[("https_proxy", "127.0.0.1:3128")]);
    match Channel::new(&srv.target(), ChannelOptions::default()) {
        Err(ChannelError::InvalidProxy(m)) => assert!(m.contains("https_proxy"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a malformed https_proxy was accepted"),
    }
    // Unix sockets are never proxied, whatever the environment says.
    assert!(Channel::new(
        "unix:/tmp/rgrpc-nonexistent.sock",
        ChannelOptions::default()
    )
    .is_ok());
}

#[test]
fn an_unreachable_proxy_fails_unavailable_naming_it() {
    let _env = env_lock();
    let srv = TestServer::start();
    let port = free_port();
    let ch = channel_with(
        &srv.target(),
        proxy_opts(&format!("http://127.0.0.1:{port}")),
    );
    let (_, st) = unary(&ch, UNARY, timeout(10_000), &simple(1, 1));
    assert_code(&st, Code::Unavailable);
    assert!(
        st.message()
            .contains(&format!("HTTP proxy 127.0.0.1:{port}")),
        "{}",
        st.message()
    );
}
