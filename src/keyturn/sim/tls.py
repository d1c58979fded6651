"""Test certificates for the simulators (trustme): a lab CA and server contexts signed by it.

`SimCA.create()` makes a CA; `server_context(*hosts)` returns an `ssl.SSLContext` whose leaf carries
every given host/IP in its SANs; `write_ca(path)` writes the CA PEM that clients trust (`ca_cert` in
the lab state file). `self_signed_context(host)` gives a device its own one-off CA, the default for a
single simulated device — clients then need the fingerprint or that device's CA to trust it.

`ios_self_signed_context(number, key)` is what stock IOS XE serves (reference §5): one self-signed
certificate from trustpoint `TP-self-signed-<n>`, subject and issuer `CN=IOS-Self-Signed-Certificate-<n>`,
an RSA key, and **no subjectAltName** — hostname verification against a CA bundle cannot pass, only a
pinned fingerprint can. One RSA key may be shared by a whole lab (`rsa_key()`: key generation is the
slow part); every device still gets its own certificate and so its own fingerprint.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

IOS_SELF_SIGNED_CN = "IOS-Self-Signed-Certificate-{number}"
IOS_KEY_BITS = 2048
IOS_CERT_YEARS = 10


class SimCA:
    def __init__(self, ca: trustme.CA) -> None:
        self._ca = ca

    @classmethod
    def create(cls, organization: str = "keyturn simulator lab") -> SimCA:
        return cls(trustme.CA(organization_name=organization))

    def write_ca(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._ca.cert_pem.write_to_path(str(path))
        return path

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def server_context(self, *hosts: str) -> ssl.SSLContext:
        """A TLS server context with a fresh leaf for `hosts` (names and IPs), signed by this CA."""
        return self.server_context_and_der(*hosts)[0]

    def server_context_and_der(self, *hosts: str) -> tuple[ssl.SSLContext, bytes]:
        """`server_context(*hosts)` and the leaf certificate's DER (for its fingerprint)."""
        leaf = self._ca.issue_cert(*hosts)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(ctx)
        return ctx, ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx


def self_signed_context(*hosts: str) -> tuple[ssl.SSLContext, SimCA]:
    """A device's own certificate from a one-off CA (what a factory-fresh device presents)."""
    ca = SimCA.create(organization="keyturn simulated device")
    return ca.server_context(*hosts), ca


def self_signed_context_and_der(*hosts: str) -> tuple[ssl.SSLContext, SimCA, bytes]:
    """`self_signed_context(*hosts)` and the leaf certificate's DER."""
    ca = SimCA.create(organization="keyturn simulated device")
    ctx, der = ca.server_context_and_der(*hosts)
    return ctx, ca, der


def der_fingerprint(der: bytes) -> str:
    """SHA-256 fingerprint of a DER certificate as lower-case hex (what `fingerprint` fields pin)."""
    return hashlib.sha256(der).hexdigest()


def rsa_key(bits: int = IOS_KEY_BITS) -> rsa.RSAPrivateKey:
    """An RSA key for IOS-style certificates (the `crypto key generate rsa` default modulus on 17.x)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ios_self_signed_cert(number: int, key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The certificate of trustpoint `TP-self-signed-<number>`: self-signed, CA, no subjectAltName."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, IOS_SELF_SIGNED_CN.format(number=number))])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)           # IOS numbers its self-signed certificate 01
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * IOS_CERT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def ios_self_signed_context(number: int, key: rsa.RSAPrivateKey) -> tuple[ssl.SSLContext, bytes]:
    """A server context presenting `ios_self_signed_cert(number, key)`, and that certificate's DER."""
    cert = ios_self_signed_cert(number, key)
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # ssl loads certificates from files only (bpo-16487): a private temp file, removed at once.
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    return ctx, cert.public_bytes(serialization.Encoding.DER)
