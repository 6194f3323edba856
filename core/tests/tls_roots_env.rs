//! `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` is honoured like C-core: default TLS
//! credentials trust the roots in that file. (Its own test binary: it sets
//! a process-wide environment variable.)
mod support;
use rgrpc_core::channel::OptionValue;
use rgrpc_core::credentials::{ChannelCredentials, TlsCredentials, ROOTS_ENV};
use rgrpc_core::{CallOptions, Channel, ChannelOptions, Code};
use rgrpc_tonic_interop::TlsServerOptions;
use support::certs::*;
use support::*;

#[test]
fn default_roots_come_from_the_env_file() {
    let ca = Ca::new("env CA");
    let pem = ca.server(&["foo.test.google.fr"], true, false);
    let srv = TestServer::start_with(ServerOptions {
        tls: Some(TlsServerOptions {
            cert_chain_pem: pem.cert,
            key_pem: pem.key,
            client_ca_pem: None,
            no_alpn: false,
        }),
        ..Default::default()
    });
    let path = std::env::temp_dir().join(format!("rgrpc-roots-{}.pem", std::process::id()));
    std::fs::write(&path, &ca.cert_pem).unwrap();
    std::env::set_var(ROOTS_ENV, &path);
    let tls = TlsCredentials::new(None, None).unwrap();
    assert!(tls.roots_source.contains(ROOTS_ENV), "{}", tls.roots_source);
    let mut o = ChannelOptions::default();
    o.set(
        "grpc.ssl_target_name_override",
        OptionValue::Str("foo.test.google.fr".into()),
    )
    .unwrap();
    let ch = Channel::with_credentials(&srv.target(), ChannelCredentials::tls(tls), o).unwrap();
    let (_, st) = unary(&ch, EMPTY, CallOptions::default(), &[]);
    assert_code(&st, Code::Ok);
    // A missing file is an error, not a silent fallback.
    std::env::set_var(ROOTS_ENV, "/nonexistent/roots.pem");
    assert!(TlsCredentials::new(None, None).is_err());
    std::env::remove_var(ROOTS_ENV);
    // Without it: the system store (or the bundled roots), never empty.
    let sys = TlsCredentials::new(None, None).unwrap();
    assert!(!sys.roots_source.is_empty());
    let _ = std::fs::remove_file(path);
}
