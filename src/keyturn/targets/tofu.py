"""Trust on first use: read a device's TLS certificate and SSH host key so they can be pinned.

`fetch_fingerprint(host, port)` connects without verifying, reads the leaf certificate and returns its
SHA-256 as lower-case hex — the value for a resource's `fingerprint` field. `fetch_certificate` also
returns what a person compares with the device (`show crypto pki certificates verbose`: subject,
issuer, serial, validity, SHA-1 fingerprint). `fetch_host_key_fingerprint(host, port)` runs an SSH key
exchange only — no user name, no credential — and returns the host key's ``SHA256:...`` fingerprint
as ``ssh-keygen -l`` prints it: the value for `host_key_fingerprint`.

Show the values to the user to compare with the device before saving them: the first connection is
exactly the one an attacker in the path could answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import asyncssh

from keyturn.errors import TargetTimeout, TargetUnreachable


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """The leaf certificate a TLS endpoint presents, as a person compares it with the device."""

    sha256: str                 # lower-case hex, the pinned value
    sha1: str                   # lower-case hex; IOS XE's `show crypto pki certificates verbose` shows SHA-1
    subject: str                # RFC 4514
    issuer: str
    serial: str                 # hex, as IOS prints it
    not_before: str             # ISO 8601, UTC
    not_after: str
    san: tuple[str, ...]        # "DNS:x" / "IP:1.2.3.4"; stock IOS XE self-signed certificates have none

    @property
    def self_signed(self) -> bool:
        return self.subject == self.issuer


@dataclass(frozen=True, slots=True)
class HostKeyInfo:
    """The SSH host key a device negotiated: `fingerprint` as ``ssh-keygen -l`` prints it."""

    fingerprint: str            # "SHA256:<base64 without padding>"
    algorithm: str              # e.g. "ssh-ed25519", "rsa-sha2-256"


async def _peer_certificate(host: str, port: int, connect_timeout: float) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we only read the certificate; nothing is sent
    try:
        async with asyncio.timeout(connect_timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    except TimeoutError as exc:
        raise TargetTimeout(f"{host}:{port}: timed out reading the certificate") from exc
    except (OSError, ssl.SSLError) as exc:
        raise TargetUnreachable(f"{host}:{port}: cannot read the certificate ({type(exc).__name__})") from exc
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise TargetUnreachable(f"{host}:{port}: the server presented no certificate")
        return bytes(der)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):  # a one-off connection; nothing to report
            await writer.wait_closed()


async def fetch_fingerprint(host: str, port: int = 443, *, connect_timeout: float = 10.0) -> str:
    """SHA-256 (hex) of the certificate `host:port` presents; `TargetUnreachable`/`TargetTimeout`."""
    return hashlib.sha256(await _peer_certificate(host, port, connect_timeout)).hexdigest()


async def fetch_certificate(host: str, port: int = 443, *, connect_timeout: float = 10.0) -> CertificateInfo:
    """The certificate `host:port` presents, fingerprints and names; `TargetUnreachable`/`TargetTimeout`."""
    der = await _peer_certificate(host, port, connect_timeout)
    return describe_certificate(der)


def describe_certificate(der: bytes) -> CertificateInfo:
    """Fingerprints, names and validity of a DER certificate; `TargetUnreachable` if it does not parse."""
    # Parsing only (no keys, no signatures): the vault barrier stays the only cryptography with keys.
    from cryptography import x509

    sha256, sha1 = hashlib.sha256(der).hexdigest(), hashlib.sha1(der, usedforsecurity=False).hexdigest()
    try:
        cert = x509.load_der_x509_certificate(der)
        subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
        san: tuple[str, ...] = ()
        with contextlib.suppress(x509.ExtensionNotFound):
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            san = tuple([f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
                        + [f"IP:{a}" for a in ext.get_values_for_type(x509.IPAddress)])
        serial = f"{cert.serial_number:X}"
        not_before = cert.not_valid_before_utc.isoformat()
        not_after = cert.not_valid_after_utc.isoformat()
    except ValueError as exc:
        raise TargetUnreachable(f"the server's certificate does not parse ({exc})") from exc
    return CertificateInfo(sha256=sha256, sha1=sha1, subject=subject, issuer=issuer, serial=serial,
                           not_before=not_before, not_after=not_after, san=san)


async def fetch_host_key(host: str, port: int = 22, *, connect_timeout: float = 10.0,
                         algorithms: Mapping[str, list[str]] | None = None) -> HostKeyInfo:
    """The SSH host key `host:port` presents, after a key exchange only (no credential is sent).

    `algorithms` are the asyncssh algorithm lists keyturn's SSH targets use for this resource
    (`iosxe_ssh.ssh_algorithms`), so the key negotiated here is the one they will check.
    Raises `TargetUnreachable` / `TargetTimeout` (mapped at the one asyncssh boundary,
    `iosxe_ssh.map_ssh_errors`).
    """
    from keyturn.targets.iosxe_ssh import map_ssh_errors, ssh_algorithms

    if algorithms is None:
        algorithms = ssh_algorithms({})
    where = f"{host}:{port}"
    legacy = "ssh-rsa" in algorithms.get("server_host_key_algs", ())
    with map_ssh_errors(target="iosxe-ssh", record=None, host=where, doing="reading the SSH host key",
                        legacy=legacy):
        async with asyncio.timeout(connect_timeout):
            # Key exchange and host key lists only: get_server_host_key takes no MAC list.
            key = await asyncssh.get_server_host_key(
                host, port, config=None, kex_algs=list(algorithms.get("kex_algs", ())) or (),
                server_host_key_algs=list(algorithms.get("server_host_key_algs", ())) or ())
    if key is None:
        raise TargetUnreachable(f"{where}: the SSH server presented no host key")
    return HostKeyInfo(fingerprint=str(key.get_fingerprint("sha256")), algorithm=str(key.get_algorithm()))


async def fetch_host_key_fingerprint(host: str, port: int = 22, *, connect_timeout: float = 10.0) -> str:
    """``SHA256:...`` of the SSH host key `host:port` presents (no credential is sent)."""
    return (await fetch_host_key(host, port, connect_timeout=connect_timeout)).fingerprint
