//! TLS serving (custom CA, mutual TLS, no ALPN), the TLS flags of the
//! binary, and the reflection of `authorization`, the client certificate's
//! name and `x-rgrpc-echo-all`. Certificates are made here with rcgen; no key
//! is kept anywhere.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    PKCS_ED25519,
};
use rgrpc_tonic_interop::pb::test_service_client::TestServiceClient;
use rgrpc_tonic_interop::pb::{Empty, SimpleRequest};
use rgrpc_tonic_interop::{ServerOptions, TestServer, TlsServerOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Endpoint, Uri};
use tonic::Request;

/// A certificate and its key, PEM.
struct Pem {
    cert: String,
    key: String,
}

/// A CA with the certificates it signed.
struct Pki {
    ca: String,
    server: Pem,
    client: Pem,
    /// A client certificate signed by another CA.
    stranger: Pem,
    /// The other CA.
    other_ca: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, name.to_string());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate for `sans`, with subject CN `cn` (None: no subject),
/// signed by `issuer`, with a key from `key`.
fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    sans: &[&str],
    cn: Option<&str>,
    key: KeyPair,
) -> Pem {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    let cert = params.signed_by(&key, issuer).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn pki() -> Pki {
    let ca1 = ca("rgrpc test CA");
    let ca2 = ca("rgrpc other CA");
    Pki {
        ca: ca1.pem(),
        server: leaf(
            &ca1,
            &["localhost", "foo.test.google.fr", "127.0.0.1"],
            Some("localhost"),
            KeyPair::generate().unwrap(),
        ),
        client: leaf(
            &ca1,
            &["client.example"],
            Some("rgrpc-test-client"),
            KeyPair::generate().unwrap(),
        ),
        stranger: leaf(
            &ca2,
            &["stranger.example"],
            Some("stranger"),
            KeyPair::generate().unwrap(),
        ),
        other_ca: ca2.pem(),
    }
}

fn tls_server(pki: &Pki, client_ca: Option<&str>, no_alpn: bool) -> TestServer {
    TestServer::start_with(ServerOptions {
        tls: Some(TlsServerOptions {
            cert_chain_pem: pki.server.cert.clone().into_bytes(),
            key_pem: pki.server.key.clone().into_bytes(),
            client_ca_pem: client_ca.map(|c| c.as_bytes().to_vec()),
            no_alpn,
        }),
        ..Default::default()
    })
}

/// A rustls client config trusting `roots_pem`, offering ALPN h2, with an
/// optional client certificate.
fn client_config(roots_pem: &str, client: Option<&Pem>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(pem) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// A raw TLS connection to `addr`, checking the certificate for `name`.
async fn tls_connect(
    addr: SocketAddr,
    config: ClientConfig,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

/// An EmptyCall over TLS with `config` (checking the certificate for
/// `name`, which is also the `:authority`) and `metadata`; returns the
/// response headers or a description of the failure (TLS or gRPC).
async fn tls_call(
    server: &TestServer,
    config: ClientConfig,
    name: &str,
    metadata: &[(&'static str, &str)],
) -> Result<MetadataMap, String> {
    let addr = server.addr();
    let config = Arc::new(config);
    let server_name = name.to_string();
    let channel = Endpoint::from_shared(format!("http://{name}:{}", addr.port()))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let config = config.clone();
            let server_name = server_name.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let tls = TlsConnector::from(config)
                    .connect(ServerName::try_from(server_name).unwrap(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut req = Request::new(Empty {});
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    TestServiceClient::new(channel)
        .empty_call(req)
        .await
        .map(|resp| resp.metadata().clone())
        .map_err(|s| format!("call: {s:?}"))
}

fn get<'a>(md: &'a MetadataMap, key: &str) -> Option<&'a str> {
    md.get(key).map(|v| v.to_str().unwrap())
}

const ECHO_HEADERS: (&str, &str) = ("x-rgrpc-echo-request-headers", "1");

#[tokio::test]
async fn tls_with_custom_roots() {
    let pki = pki();
    let server = tls_server(&pki, None, false);
    assert_eq!(
        server.target(),
        format!("127.0.0.1:{}", server.addr().port())
    );

    let md = tls_call(
        &server,
        client_config(&pki.ca, None),
        "foo.test.google.fr",
        &[ECHO_HEADERS],
    )
    .await
    .unwrap();
    let authority = format!("foo.test.google.fr:{}", server.addr().port());
    assert_eq!(get(&md, "x-rgrpc-req-authority"), Some(authority.as_str()));
    assert_eq!(get(&md, "x-rgrpc-req-peer-cn"), None);

    // ALPN h2 is negotiated.
    let tls = tls_connect(server.addr(), client_config(&pki.ca, None), "localhost")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn tls_certificate_checks_fail_the_handshake() {
    let pki = pki();
    let server = tls_server(&pki, None, false);
    // Not a name of the server's certificate.
    let err = tls_connect(server.addr(), client_config(&pki.ca, None), "other.example")
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");
    // A client that trusts another CA.
    let err = tls_connect(
        server.addr(),
        client_config(&pki.other_ca, None),
        "localhost",
    )
    .await
    .unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
}

#[tokio::test]
async fn plaintext_client_is_not_served() {
    let pki = pki();
    let server = tls_server(&pki, None, false);
    let res = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        let channel = Endpoint::from_shared(format!("http://{}", server.target()))
            .unwrap()
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        TestServiceClient::new(channel)
            .empty_call(Empty {})
            .await
            .map_err(|s| format!("call: {s:?}"))
    })
    .await
    .expect("plaintext client hung");
    assert!(res.is_err(), "a plaintext call succeeded");
}

#[tokio::test]
async fn mtls_reports_the_client_cn() {
    let pki = pki();
    let server = tls_server(&pki, Some(&pki.ca), false);
    let md = tls_call(
        &server,
        client_config(&pki.ca, Some(&pki.client)),
        "localhost",
        &[ECHO_HEADERS],
    )
    .await
    .unwrap();
    assert_eq!(get(&md, "x-rgrpc-req-peer-cn"), Some("rgrpc-test-client"));

    // Without echo-request-headers, nothing is reflected.
    let md = tls_call(
        &server,
        client_config(&pki.ca, Some(&pki.client)),
        "localhost",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(get(&md, "x-rgrpc-req-peer-cn"), None);
}

#[tokio::test]
async fn mtls_peer_name_falls_back_to_the_dns_san() {
    let pki = pki();
    let ca = ca("rgrpc SAN CA");
    let client = leaf(
        &ca,
        &["san-only.example"],
        None,
        KeyPair::generate().unwrap(),
    );
    let server = tls_server(&pki, Some(&ca.pem()), false);
    let md = tls_call(
        &server,
        client_config(&pki.ca, Some(&client)),
        "localhost",
        &[ECHO_HEADERS],
    )
    .await
    .unwrap();
    assert_eq!(get(&md, "x-rgrpc-req-peer-cn"), Some("san-only.example"));
}

#[tokio::test]
async fn mtls_client_key_types() {
    let pki = pki();
    let ca = ca("rgrpc key types CA");
    let server = tls_server(&pki, Some(&ca.pem()), false);
    let keys = [
        ("ecdsa", KeyPair::generate().unwrap()),
        ("ed25519", KeyPair::generate_for(&PKCS_ED25519).unwrap()),
    ];
    for (kind, key) in keys {
        let client = leaf(&ca, &["client.example"], Some(kind), key);
        let md = tls_call(
            &server,
            client_config(&pki.ca, Some(&client)),
            "localhost",
            &[ECHO_HEADERS],
        )
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(get(&md, "x-rgrpc-req-peer-cn"), Some(kind));
    }
    // (ring cannot generate RSA keys: RSA client keys are tested with the
    // certificates of cbindings-tests/make_test_certs.py.)
}

#[tokio::test]
async fn mtls_requires_a_client_certificate() {
    let pki = pki();
    let server = tls_server(&pki, Some(&pki.ca), false);
    let err = tls_call(&server, client_config(&pki.ca, None), "localhost", &[])
        .await
        .unwrap_err();
    eprintln!("without a client certificate: {err}");
}

#[tokio::test]
async fn mtls_rejects_a_certificate_of_another_ca() {
    let pki = pki();
    let server = tls_server(&pki, Some(&pki.ca), false);
    let err = tls_call(
        &server,
        client_config(&pki.ca, Some(&pki.stranger)),
        "localhost",
        &[],
    )
    .await
    .unwrap_err();
    eprintln!("with a certificate of another CA: {err}");
}

#[tokio::test]
async fn no_alpn_negotiates_no_protocol() {
    let pki = pki();
    let server = tls_server(&pki, None, true);
    let tls = tls_connect(server.addr(), client_config(&pki.ca, None), "localhost")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
}

#[test]
fn unusable_pem_fails_to_start() {
    let pki = pki();
    let cases = [
        (
            b"garbage".to_vec(),
            pki.server.key.clone().into_bytes(),
            None,
        ),
        (
            pki.server.cert.clone().into_bytes(),
            b"garbage".to_vec(),
            None,
        ),
        // The key does not match the certificate.
        (
            pki.server.cert.clone().into_bytes(),
            pki.client.key.clone().into_bytes(),
            None,
        ),
        (
            pki.server.cert.clone().into_bytes(),
            pki.server.key.clone().into_bytes(),
            Some(b"garbage".to_vec()),
        ),
    ];
    for (cert, key, client_ca) in cases {
        let tls = TlsServerOptions {
            cert_chain_pem: cert,
            key_pem: key,
            client_ca_pem: client_ca,
            no_alpn: false,
        };
        assert!(tls.check().is_err());
        let err = TestServer::try_start_with(ServerOptions {
            tls: Some(tls),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }
}

#[tokio::test]
async fn authorization_is_reflected() {
    let server = TestServer::start();
    let mut client = common::connect(&server).await;
    let mut req = Request::new(Empty {});
    req.metadata_mut()
        .insert(ECHO_HEADERS.0, "1".parse().unwrap());
    req.metadata_mut()
        .insert("authorization", "Bearer tok-123".parse().unwrap());
    let resp = client.empty_call(req).await.unwrap();
    assert_eq!(
        get(resp.metadata(), "x-rgrpc-req-authorization"),
        Some("Bearer tok-123")
    );

    // Absent when the request has none.
    let mut req = Request::new(Empty {});
    req.metadata_mut()
        .insert(ECHO_HEADERS.0, "1".parse().unwrap());
    let resp = client.empty_call(req).await.unwrap();
    assert_eq!(get(resp.metadata(), "x-rgrpc-req-authorization"), None);
}

#[tokio::test]
async fn echo_all_copies_unreserved_metadata() {
    let server = TestServer::start();
    let mut client = common::connect(&server).await;
    let mut req = Request::new(SimpleRequest {
        response_size: 3,
        ..Default::default()
    });
    let md = req.metadata_mut();
    md.insert("x-rgrpc-echo-all", "1".parse().unwrap());
    md.insert("authorization", "Bearer abc".parse().unwrap());
    md.append("k", "v1".parse().unwrap());
    md.append("k", "v2".parse().unwrap());
    md.insert_bin("blob-bin", MetadataValue::from_bytes(&[0, 1, 0xfe, 0xff]));
    let resp = client.unary_call(req).await.unwrap();
    let md = resp.metadata();
    assert_eq!(get(md, "x-echo-authorization"), Some("Bearer abc"));
    assert_eq!(get(md, "x-echo-x-rgrpc-echo-all"), Some("1"));
    let ks: Vec<_> = md
        .get_all("x-echo-k")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(ks, ["v1", "v2"]);
    assert_eq!(
        md.get_bin("x-echo-blob-bin").unwrap().to_bytes().unwrap(),
        &[0, 1, 0xfe, 0xff][..]
    );
    for reserved in ["user-agent", "te", "content-type", "grpc-accept-encoding"] {
        assert!(
            md.get(format!("x-echo-{reserved}")).is_none(),
            "{reserved} echoed"
        );
    }
    assert_eq!(resp.into_inner().payload.unwrap().body.len(), 3);
}

/// Writes the PKI's files into a fresh directory under the target's tmp.
fn write_files(pki: &Pki, tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rgrpc-tonic-interop-tls-{}-{tag}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in [
        ("ca.pem", &pki.ca),
        ("server.pem", &pki.server.cert),
        ("server.key", &pki.server.key),
    ] {
        std::fs::write(dir.join(name), content).unwrap();
    }
    dir
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_tls_and_mtls() {
    let pki = pki();
    let dir = write_files(&pki, "bin");
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    for mtls in [false, true] {
        let mut args = vec![
            "--port".to_string(),
            "0".to_string(),
            "--use_tls".to_string(),
            "--tls_cert_file".to_string(),
            file("server.pem"),
            format!("--tls_key_file={}", file("server.key")),
        ];
        if mtls {
            args.extend(["--tls_client_ca_file".to_string(), file("ca.pem")]);
        }
        let mut child = Child(
            Command::new(env!("CARGO_BIN_EXE_tonic-interop-server"))
                .args(&args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim_end()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let client = mtls.then_some(&pki.client);
        let tls = tls_connect(addr, client_config(&pki.ca, client), "localhost")
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        drop(tls);
        // A full call, with the peer's name when mutual.
        let md = {
            let config = Arc::new(client_config(&pki.ca, client));
            let channel = Endpoint::from_shared(format!("http://localhost:{port}"))
                .unwrap()
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let config = config.clone();
                    async move {
                        let tcp = TcpStream::connect(addr).await?;
                        let tls = TlsConnector::from(config)
                            .connect(ServerName::try_from("localhost").unwrap(), tcp)
                            .await?;
                        Ok::<_, std::io::Error>(TokioIo::new(tls))
                    }
                }))
                .await
                .unwrap();
            let mut req = Request::new(Empty {});
            req.metadata_mut()
                .insert(ECHO_HEADERS.0, "1".parse().unwrap());
            let resp = TestServiceClient::new(channel)
                .empty_call(req)
                .await
                .unwrap();
            resp.metadata().clone()
        };
        let want = mtls.then_some("rgrpc-test-client");
        assert_eq!(get(&md, "x-rgrpc-req-peer-cn"), want);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_rejects_bad_tls_arguments() {
    let pki = pki();
    let dir = write_files(&pki, "badargs");
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let cases: Vec<Vec<String>> = vec![
        // Files missing.
        vec!["--use_tls".into()],
        vec![
            "--use_tls=true".into(),
            "--tls_cert_file".into(),
            file("server.pem"),
        ],
        // Files without --use_tls.
        vec![
            "--use_tls=false".into(),
            "--tls_cert_file".into(),
            file("server.pem"),
            "--tls_key_file".into(),
            file("server.key"),
        ],
        // Unreadable or unusable.
        vec![
            "--use_tls".into(),
            "--tls_cert_file".into(),
            file("nonexistent.pem"),
            "--tls_key_file".into(),
            file("server.key"),
        ],
        vec![
            "--use_tls".into(),
            "--tls_cert_file".into(),
            file("server.key"),
            "--tls_key_file".into(),
            file("server.key"),
        ],
        vec!["--use_tls=maybe".into()],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_tonic-interop-server"))
            .args(["--port", "0"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
