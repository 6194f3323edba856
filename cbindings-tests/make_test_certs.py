#!/usr/bin/env python3
"""Make the throwaway certificates of rgrpc's TLS tests.

    make_test_certs.py DIR

Writes into DIR (created if needed) and prints DIR:

  ca.pem, ca.key              the test CA (RSA 2048; certificates signed with
                              RSA-SHA256)
  server.pem, server.key      server certificate signed by the CA, valid for
                              DNS localhost, DNS foo.test.google.fr and
                              IP 127.0.0.1 (ECDSA P-256 key, PKCS#8)
  expired.pem, expired.key    same names, signed by the CA, expired yesterday
  wrongname.pem, wrongname.key
                              signed by the CA, valid for DNS other.example only
  otherca.pem, otherca.key    a second, unrelated CA (ECDSA P-256)
  client.pem, client.key      client certificate signed by the CA,
                              CN rgrpc-test-client (ECDSA P-256, PKCS#8)
  client-rsa.pem/.key         CN rgrpc-test-client-rsa, RSA 2048 key in
                              PKCS#1 ("BEGIN RSA PRIVATE KEY")
  client-ecdsa.pem/.key       CN rgrpc-test-client-ecdsa, ECDSA P-256 key in
                              SEC1 ("BEGIN EC PRIVATE KEY")
  client-ed25519.pem/.key     CN rgrpc-test-client-ed25519, Ed25519 key
                              (PKCS#8, the only form there is)
  badclient.pem, badclient.key
                              CN rgrpc-bad-client, signed by the other CA

Certificates are valid from a day ago for 30 days (the expired one ended a
day ago). Idempotent: when DIR already holds a complete set (the
`.complete` marker of this version) whose server certificate is valid for
at least another day, nothing is written. The keys protect nothing: they
are made for one test run and should live in a temporary directory.

Needs the Python `cryptography` package (pip install cryptography).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("make_test_certs.py: the Python 'cryptography' package is required "
             "(python3 -m pip install cryptography)")

MARKER = ".complete"
VERSION = "rgrpc-test-certs 1"
SERVER_NAMES = ["localhost", "foo.test.google.fr"]
SERVER_IPS = ["127.0.0.1"]
VALIDITY_DAYS = 30

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rgrpc tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def sign_hash(issuer_key):
    # Ed25519 keys sign without a separate hash; RSA and ECDSA with SHA-256.
    return None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


class Ca:
    def __init__(self, cn: str, key):
        self.key = key
        self.name = name(cn)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY)
            .not_valid_after(NOW + VALIDITY_DAYS * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, sign_hash(key))
        )

    def issue(self, key, cn: str, *, dns=(), ips=(), server: bool,
              not_before=None, not_after=None) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - DAY)
            .not_valid_after(not_after or NOW + VALIDITY_DAYS * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # RSA key exchange (TLS 1.2 RSA suites) needs it; harmless otherwise.
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
        )
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, sign_hash(self.key))


def key_pem(key, fmt=serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write(directory: str, filename: str, data: bytes, private: bool = False) -> None:
    path = os.path.join(directory, filename)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def up_to_date(directory: str) -> bool:
    try:
        with open(os.path.join(directory, MARKER)) as f:
            if f.read().strip() != VERSION:
                return False
        with open(os.path.join(directory, "server.pem"), "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return False
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(
        tzinfo=datetime.timezone.utc)
    return not_after > NOW + DAY


def make(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    if up_to_date(directory):
        return
    try:
        os.remove(os.path.join(directory, MARKER))
    except FileNotFoundError:
        pass

    ca = Ca("rgrpc test CA", rsa_key())
    other = Ca("rgrpc other CA", ec_key())
    files = {
        "ca.pem": cert_pem(ca.cert),
        "ca.key": key_pem(ca.key),
        "otherca.pem": cert_pem(other.cert),
        "otherca.key": key_pem(other.key),
    }

    def leaf(stem, issuer, key, cn, key_format=serialization.PrivateFormat.PKCS8, **kw):
        files[f"{stem}.pem"] = cert_pem(issuer.issue(key, cn, **kw))
        files[f"{stem}.key"] = key_pem(key, key_format)

    leaf("server", ca, ec_key(), "localhost", dns=SERVER_NAMES, ips=SERVER_IPS, server=True)
    leaf("expired", ca, ec_key(), "localhost", dns=SERVER_NAMES, ips=SERVER_IPS, server=True,
         not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    leaf("wrongname", ca, ec_key(), "other.example", dns=["other.example"], server=True)
    leaf("client", ca, ec_key(), "rgrpc-test-client", server=False)
    leaf("client-rsa", ca, rsa_key(), "rgrpc-test-client-rsa", server=False,
         key_format=serialization.PrivateFormat.TraditionalOpenSSL)
    leaf("client-ecdsa", ca, ec_key(), "rgrpc-test-client-ecdsa", server=False,
         key_format=serialization.PrivateFormat.TraditionalOpenSSL)
    leaf("client-ed25519", ca, ed25519.Ed25519PrivateKey.generate(),
         "rgrpc-test-client-ed25519", server=False)
    leaf("badclient", other, ec_key(), "rgrpc-bad-client", server=False)

    for filename, data in files.items():
        write(directory, filename, data, private=filename.endswith(".key"))
    write(directory, MARKER, (VERSION + "\n").encode())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    directory = os.path.abspath(argv[0])
    make(directory)
    print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
