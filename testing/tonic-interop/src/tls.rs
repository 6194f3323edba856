//! TLS for the test server (rustls with the `ring` provider): the server's
//! certificate and key, optionally a CA that client certificates must chain
//! to (mutual TLS), and the ALPN `h2` offer that can be switched off to test
//! clients that require it.
//!
//! The identity of a client that presented a certificate is handed to the
//! HTTP layer as a [`PeerIdentity`] request extension, which the header
//! reflection reports as `x-rgrpc-req-peer-cn`.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use tokio_rustls::TlsAcceptor;

/// TLS settings of the test server ([`crate::ServerOptions::tls`]).
#[derive(Clone, Debug, Default)]
pub struct TlsServerOptions {
    /// The server's certificate chain, PEM (leaf first).
    pub cert_chain_pem: Vec<u8>,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
    /// `Some(CA certificates, PEM)`: require a client certificate and verify
    /// it against these roots (mutual TLS). `None`: no client certificate
    /// is asked for.
    pub client_ca_pem: Option<Vec<u8>>,
    /// `true`: do not offer ALPN `h2` (the handshake then negotiates no
    /// application protocol), to test clients that require it.
    pub no_alpn: bool,
}

impl TlsServerOptions {
    /// Checks that the certificates and key are usable (the server would
    /// otherwise fail to start with this error).
    pub fn check(&self) -> io::Result<()> {
        acceptor(self).map(|_| ())
    }
}

/// Who the client is, from its certificate (mutual TLS only).
#[derive(Clone, Debug)]
pub(crate) struct PeerIdentity {
    /// The subject CN of the client's certificate; else its first DNS
    /// subject alternative name; else `"present"`.
    pub(crate) name: String,
}

impl PeerIdentity {
    /// The identity of the client of an established server connection
    /// (`None` when it sent no certificate).
    pub(crate) fn of(conn: &ServerConnection) -> Option<PeerIdentity> {
        let leaf = conn.peer_certificates()?.first()?;
        let name = subject_cn(leaf)
            .or_else(|| first_dns_san(leaf))
            .unwrap_or_else(|| "present".to_string());
        Some(PeerIdentity { name })
    }
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

fn parse_certs(pem: &[u8], what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{what}: bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!("{what}: no certificate in the PEM")));
    }
    Ok(certs)
}

/// Builds the acceptor for `opts`; errors (`InvalidInput`) say what is
/// wrong with the PEM inputs.
/// The `ring` provider is passed explicitly, so no process-wide default
/// provider is needed.
pub(crate) fn acceptor(opts: &TlsServerOptions) -> io::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = parse_certs(&opts.cert_chain_pem, "server certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(&opts.key_pem)
        .map_err(|e| invalid(format!("server private key: {e}")))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(invalid)?;
    let builder = match &opts.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_certs(pem, "client CA")? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("client CA: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid(format!("server certificate and key: {e}")))?;
    if !opts.no_alpn {
        config.alpn_protocols = vec![b"h2".to_vec()];
    }
    Ok(TlsAcceptor::from(Arc::new(config)))
}

// ---------------------------------------------------------------------------
// A minimal DER walk: enough of X.509 to find the subject CN and the DNS
// subject alternative names of a certificate.

/// One DER element: tag, contents, and what follows it.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
    rest: &'a [u8],
}

fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let len = input[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        input = &input[n..];
        len
    };
    if input.len() < len {
        return None;
    }
    Some(Tlv {
        tag,
        body: &input[..len],
        rest: &input[len..],
    })
}

/// The elements of a constructed value's contents.
fn children(mut body: &[u8]) -> impl Iterator<Item = Tlv<'_>> {
    std::iter::from_fn(move || {
        if body.is_empty() {
            return None;
        }
        let t = tlv(body)?;
        body = t.rest;
        Some(t)
    })
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// id-at-commonName, 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// The fields of the TBSCertificate, with the optional `[0] version` skipped:
/// serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo,
/// then optional unique IDs and `[3] extensions`.
fn tbs_fields(cert: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let cert = tlv(cert).filter(|t| t.tag == SEQUENCE)?;
    let tbs = tlv(cert.body).filter(|t| t.tag == SEQUENCE)?;
    let mut fields: Vec<Tlv<'_>> = children(tbs.body).collect();
    if fields.first().is_some_and(|f| f.tag == 0xa0) {
        fields.remove(0);
    }
    (fields.len() >= 6).then_some(fields)
}

/// The first commonName of the certificate's subject (any string type).
pub(crate) fn subject_cn(cert: &[u8]) -> Option<String> {
    let fields = tbs_fields(cert)?;
    let subject = &fields[4];
    if subject.tag != SEQUENCE {
        return None;
    }
    for rdn in children(subject.body).filter(|t| t.tag == SET) {
        for atv in children(rdn.body).filter(|t| t.tag == SEQUENCE) {
            let mut parts = children(atv.body);
            let (Some(oid), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            if oid.tag == OID && oid.body == OID_CN {
                return String::from_utf8(value.body.to_vec()).ok();
            }
        }
    }
    None
}

/// The certificate's first DNS subject alternative name.
pub(crate) fn first_dns_san(cert: &[u8]) -> Option<String> {
    let fields = tbs_fields(cert)?;
    let extensions = fields[6..].iter().find(|f| f.tag == 0xa3)?;
    let list = tlv(extensions.body).filter(|t| t.tag == SEQUENCE)?;
    for ext in children(list.body).filter(|t| t.tag == SEQUENCE) {
        let mut parts = children(ext.body);
        let Some(oid) = parts.next() else { continue };
        if oid.tag != OID || oid.body != OID_SAN {
            continue;
        }
        // Optional `critical BOOLEAN`, then the OCTET STRING.
        let value = parts.find(|t| t.tag == 0x04)?;
        let names = tlv(value.body).filter(|t| t.tag == SEQUENCE)?;
        // dNSName is `[2] IA5String`, implicitly tagged.
        return children(names.body)
            .find(|n| n.tag == 0x82)
            .and_then(|n| String::from_utf8(n.body.to_vec()).ok());
    }
    None
}
