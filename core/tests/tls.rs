//! TLS against a real tonic server with rustls: custom roots, the name
//! override, every verification failure, mutual TLS with RSA, ECDSA and
//! Ed25519 client keys, and call credentials (token, plugin, composite).
mod support;
use rgrpc_core::channel::OptionValue;
use rgrpc_core::credentials::{
    CallCredentials, ChannelCredentials, MetadataPlugin, PluginResponder, TlsCredentials,
};
use rgrpc_core::{CallOptions, Channel, ChannelOptions, Code, Metadata, Status};
use rgrpc_tonic_interop::TlsServerOptions;
use std::sync::Arc;
use std::time::Duration;
use support::certs::*;
use support::*;

const HOST: &str = "foo.test.google.fr";

fn tls_server(pem: &Pem, client_ca: Option<&Ca>, no_alpn: bool) -> TestServer {
    TestServer::start_with(ServerOptions {
        tls: Some(TlsServerOptions {
            cert_chain_pem: pem.cert.clone(),
            key_pem: pem.key.clone(),
            client_ca_pem: client_ca.map(|c| c.cert_pem.clone()),
            no_alpn,
        }),
        ..Default::default()
    })
}

fn tls_creds(roots: &[u8], identity: Option<&Pem>) -> ChannelCredentials {
    let id = identity.map(|p| (p.cert.as_slice(), p.key.as_slice()));
    ChannelCredentials::tls(TlsCredentials::new(Some(roots), id).unwrap())
}

fn override_opts(name: &str) -> ChannelOptions {
    let mut o = ChannelOptions::default();
    o.set(
        "grpc.ssl_target_name_override",
        OptionValue::Str(name.into()),
    )
    .unwrap();
    o
}

fn reflect(ch: &Channel, opts: CallOptions) -> (Metadata, Arc<Status>) {
    let mut opts = opts;
    opts.metadata
        .add("x-rgrpc-echo-request-headers", b"1")
        .unwrap();
    opts.metadata.add("x-rgrpc-echo-all", b"1").unwrap();
    let call = ch.start_call(UNARY, opts).unwrap();
    block(call.send(&simple(0, 3), last())).unwrap();
    let md = block(call.initial_metadata()).unwrap().clone();
    let (_, st) = drain(&call);
    (md, st)
}

fn text(md: &Metadata, k: &str) -> String {
    String::from_utf8(md.find(k).unwrap_or_else(|| panic!("{k} missing")).to_vec()).unwrap()
}

#[test]
fn custom_roots_and_name_override() {
    let ca = Ca::new("test CA");
    let srv = tls_server(&ca.server(&["localhost", HOST], true, false), None, false);
    // By IP (the certificate has 127.0.0.1) and by name.
    let port = srv.addr().port();
    for target in [srv.target(), format!("localhost:{port}")] {
        let ch = Channel::with_credentials(
            &target,
            tls_creds(&ca.cert_pem, None),
            ChannelOptions::default(),
        )
        .unwrap();
        let (resp, st) = unary(&ch, UNARY, CallOptions::default(), &simple(100, 200));
        assert_code(&st, Code::Ok);
        assert_eq!(body_len_simple(&resp.unwrap()), 200);
    }
    // The override names both the certificate check and the :authority.
    let ch = Channel::with_credentials(
        &srv.target(),
        tls_creds(&ca.cert_pem, None),
        override_opts(HOST),
    )
    .unwrap();
    let (md, st) = reflect(&ch, CallOptions::default());
    assert_code(&st, Code::Ok);
    assert_eq!(text(&md, "x-rgrpc-req-authority"), format!("{HOST}:{port}"));
}

fn expect_unavailable(ch: &Channel, needle: &str) {
    let (_, st) = unary(ch, EMPTY, timeout(10_000), &[]);
    assert_code(&st, Code::Unavailable);
    assert!(st.message().contains(needle), "{needle:?} not in {st}");
}

#[test]
fn verification_failures_are_unavailable_and_say_which() {
    let ca = Ca::new("test CA");
    // Hostname mismatch: the certificate is for other.example only.
    let srv = tls_server(&ca.server(&["other.example"], false, false), None, false);
    let ch = Channel::with_credentials(
        &srv.target(),
        tls_creds(&ca.cert_pem, None),
        override_opts(HOST),
    )
    .unwrap();
    expect_unavailable(&ch, "hostname mismatch");
    // Expired.
    let srv = tls_server(&ca.server(&[HOST], true, true), None, false);
    let ch = Channel::with_credentials(
        &srv.target(),
        tls_creds(&ca.cert_pem, None),
        override_opts(HOST),
    )
    .unwrap();
    expect_unavailable(&ch, "expired");
    // Unknown CA.
    let other = Ca::new("other CA");
    let srv = tls_server(&ca.server(&[HOST], true, false), None, false);
    let ch = Channel::with_credentials(
        &srv.target(),
        tls_creds(&other.cert_pem, None),
        override_opts(HOST),
    )
    .unwrap();
    expect_unavailable(&ch, "unknown authority");
    // A plaintext server.
    let plain = TestServer::start();
    let ch = Channel::with_credentials(
        &plain.target(),
        tls_creds(&ca.cert_pem, None),
        override_opts(HOST),
    )
    .unwrap();
    expect_unavailable(&ch, "did not answer with TLS");
    // A TLS server that does not offer h2.
    let srv = tls_server(&ca.server(&[HOST], true, false), None, true);
    let ch = Channel::with_credentials(
        &srv.target(),
        tls_creds(&ca.cert_pem, None),
        override_opts(HOST),
    )
    .unwrap();
    expect_unavailable(&ch, "HTTP/2");
}

#[test]
fn mutual_tls_with_each_key_type() {
    let ca = Ca::new("test CA");
    let srv = tls_server(&ca.server(&[HOST], true, false), Some(&ca), false);
    for (name, key) in [
        ("ecdsa", ecdsa_key()),
        ("ed25519", ed25519_key()),
        ("rsa", rsa_key()),
    ] {
        let client = ca.client_with(&format!("client-{name}"), key);
        let ch = Channel::with_credentials(
            &srv.target(),
            tls_creds(&ca.cert_pem, Some(&client)),
            override_opts(HOST),
        )
        .unwrap();
        let (md, st) = reflect(&ch, CallOptions::default());
        assert_code(&st, Code::Ok);
        assert_eq!(text(&md, "x-rgrpc-req-peer-cn"), format!("client-{name}"));
    }
    // No client certificate, and one from another CA: refused.
    let ch = Channel::with_credentials(
        &srv.target(),
        tls_creds(&ca.cert_pem, None),
        override_opts(HOST),
    )
    .unwrap();
    let (_, st) = unary(&ch, EMPTY, timeout(10_000), &[]);
    assert_code(&st, Code::Unavailable);
    let other = Ca::new("other CA");
    let bad = other.client_with("intruder", ecdsa_key());
    let ch = Channel::with_credentials(
        &srv.target(),
        tls_creds(&ca.cert_pem, Some(&bad)),
        override_opts(HOST),
    )
    .unwrap();
    let (_, st) = unary(&ch, EMPTY, timeout(10_000), &[]);
    assert_code(&st, Code::Unavailable);
}

#[test]
fn bad_pem_inputs_are_reported() {
    assert!(TlsCredentials::new(Some(b"not a pem"), None).is_err());
    let ca = Ca::new("test CA");
    let client = ca.client_with("c", ecdsa_key());
    assert!(TlsCredentials::new(Some(&ca.cert_pem), Some((&client.cert, b"garbage"))).is_err());
    assert!(TlsCredentials::new(Some(&ca.cert_pem), Some((b"garbage", &client.key))).is_err());
}

/// A plugin answering from another thread after a delay, or failing.
struct TestPlugin {
    delay: Duration,
    fail: bool,
}

impl MetadataPlugin for TestPlugin {
    fn get_metadata(&self, method: &str, authority: &str, responder: PluginResponder) {
        let (delay, fail) = (self.delay, self.fail);
        let (m, a) = (method.to_string(), authority.to_string());
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            if fail {
                responder.fail(Code::Ok, "no ticket");
                return;
            }
            let mut md = Metadata::new();
            md.add("x-plugin-method", m.as_bytes()).unwrap();
            md.add("x-plugin-authority", a.as_bytes()).unwrap();
            responder.complete(md);
        });
    }
}

fn plugin(delay_ms: u64, fail: bool) -> CallCredentials {
    CallCredentials::Plugin(Arc::new(TestPlugin {
        delay: Duration::from_millis(delay_ms),
        fail,
    }))
}

#[test]
fn call_credentials_seen_by_the_server() {
    let ca = Ca::new("test CA");
    let srv = tls_server(&ca.server(&[HOST], true, false), None, false);
    let port = srv.addr().port();
    let token = CallCredentials::access_token("sekrit-token").unwrap();
    // Composite channel credentials: token on every call, plus a plugin per call.
    let creds = tls_creds(&ca.cert_pem, None).compose(token);
    let ch = Channel::with_credentials(&srv.target(), creds, override_opts(HOST)).unwrap();
    let (md, st) = reflect(&ch, CallOptions::default());
    assert_code(&st, Code::Ok);
    assert_eq!(
        text(&md, "x-rgrpc-req-authorization"),
        "Bearer sekrit-token"
    );
    let per_call = CallOptions {
        credentials: Some(CallCredentials::Composite(vec![
            plugin(0, false),
            plugin(150, false),
        ])),
        ..Default::default()
    };
    let (md, st) = reflect(&ch, per_call);
    assert_code(&st, Code::Ok);
    assert_eq!(
        text(&md, "x-rgrpc-req-authorization"),
        "Bearer sekrit-token"
    );
    assert_eq!(text(&md, "x-echo-x-plugin-method"), UNARY);
    assert_eq!(
        text(&md, "x-echo-x-plugin-authority"),
        format!("{HOST}:{port}")
    );
    // A failing plugin ends the call with UNAUTHENTICATED and its message.
    let failing = CallOptions {
        credentials: Some(plugin(50, true)),
        ..Default::default()
    };
    let (_, st) = unary(&ch, EMPTY, failing, &[]);
    assert_code(&st, Code::Unauthenticated);
    assert!(st.message().contains("no ticket"), "{st}");
    // A plugin slower than the deadline: DEADLINE_EXCEEDED.
    let slow = CallOptions {
        credentials: Some(plugin(2000, false)),
        ..Default::default()
    }
    .with_timeout(Duration::from_millis(200));
    let (_, st) = unary(&ch, EMPTY, slow, &[]);
    assert_code(&st, Code::DeadlineExceeded);
}

#[test]
fn call_credentials_refused_on_insecure_but_allowed_on_local() {
    let srv = TestServer::start();
    let token = CallCredentials::access_token("t0k").unwrap();
    let with_token = CallOptions {
        credentials: Some(token.clone()),
        ..Default::default()
    };
    let ch = channel(&srv.target());
    let (_, st) = unary(&ch, EMPTY, with_token.clone(), &[]);
    assert_code(&st, Code::Unauthenticated);
    assert!(st.message().contains("secure channel"), "{st}");
    let ch = Channel::with_credentials(
        &srv.target(),
        ChannelCredentials::insecure().compose(token),
        ChannelOptions::default(),
    )
    .unwrap();
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Unauthenticated);
    // Local credentials: allowed on loopback, refused elsewhere.
    let ch = Channel::with_credentials(
        &srv.target(),
        ChannelCredentials::local(),
        ChannelOptions::default(),
    )
    .unwrap();
    let (md, st) = reflect(&ch, with_token);
    assert_code(&st, Code::Ok);
    assert_eq!(text(&md, "x-rgrpc-req-authorization"), "Bearer t0k");
    assert!(Channel::with_credentials(
        "10.1.2.3:5",
        ChannelCredentials::local(),
        ChannelOptions::default()
    )
    .is_err());
    assert!(Channel::with_credentials(
        "unix:/tmp/x.sock",
        ChannelCredentials::local(),
        ChannelOptions::default()
    )
    .is_ok());
}
