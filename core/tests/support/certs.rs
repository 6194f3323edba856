//! Test certificates generated at test time (rcgen; RSA keys by the
//! openssl command line, since ring cannot generate them). Nothing here is
//! a key that matters.

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType,
    PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use std::net::{IpAddr, Ipv4Addr};

/// A certificate and its key, PEM.
pub struct Pem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

pub struct Ca {
    pub cert_pem: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem().into_bytes(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A server certificate for `names` (+ 127.0.0.1 when `ip`), valid now
    /// unless `expired`.
    pub fn server(&self, names: &[&str], ip: bool, expired: bool) -> Pem {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        if ip {
            p.subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        p.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        if expired {
            p.not_before = date_time_ymd(2001, 1, 1);
            p.not_after = date_time_ymd(2002, 1, 1);
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        }
    }

    /// A client certificate with `key`.
    pub fn client_with(&self, cn: &str, key: KeyPair) -> Pem {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        }
    }
}

pub fn ecdsa_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

pub fn ed25519_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ED25519).unwrap()
}

/// An RSA 2048 key made by `openssl genpkey`.
pub fn rsa_key() -> KeyPair {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("the openssl command (Debian package openssl) makes the RSA test key");
    assert!(out.status.success());
    KeyPair::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap()
}
