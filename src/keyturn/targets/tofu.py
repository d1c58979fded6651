"""Trust on first use: read a device's TLS certificate fingerprint so it can be pinned.

`fetch_fingerprint(host, port)` connects without verifying, reads the leaf certificate and returns its
SHA-256 as lower-case hex — the value for a resource's `fingerprint` field. Show it to the user to
compare with the device (`show crypto pki certificates`) before saving it: the first connection is
exactly the one an attacker in the path could answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl

from keyturn.errors import TargetTimeout, TargetUnreachable


async def fetch_fingerprint(host: str, port: int = 443, *, connect_timeout: float = 10.0) -> str:
    """SHA-256 (hex) of the certificate `host:port` presents; `TargetUnreachable`/`TargetTimeout`."""
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
        return hashlib.sha256(der).hexdigest()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):  # a one-off connection; nothing to report
            await writer.wait_closed()
