"""Test certificates for the simulators (trustme): a lab CA and server contexts signed by it.

`SimCA.create()` makes a CA; `server_context(*hosts)` returns an `ssl.SSLContext` whose leaf carries
every given host/IP in its SANs; `write_ca(path)` writes the CA PEM that clients trust (`ca_cert` in
the lab state file). `self_signed_context(host)` gives a device its own one-off CA, the default for a
single simulated device — clients then need the fingerprint or that device's CA to trust it.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import trustme


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
        leaf = self._ca.issue_cert(*hosts)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx


def self_signed_context(*hosts: str) -> tuple[ssl.SSLContext, SimCA]:
    """A device's own certificate from a one-off CA (what a factory-fresh device presents)."""
    ca = SimCA.create(organization="keyturn simulated device")
    return ca.server_context(*hosts), ca


def der_fingerprint(der: bytes) -> str:
    """SHA-256 fingerprint of a DER certificate as lower-case hex (what `fingerprint` fields pin)."""
    return hashlib.sha256(der).hexdigest()
