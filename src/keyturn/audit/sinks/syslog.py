"""Syslog sink: RFC 5424 messages over UDP (RFC 5426), TCP (RFC 6587 octet counting) or TLS (RFC 5425).

Message: ``<PRI>1 TIMESTAMP HOSTNAME keyturn PROCID MSGID [keyturn@32473 id=".." record=".." hash=".."]
MSG`` where PRI = facility * 8 + severity (`formats.severity`), TIMESTAMP is the audit entry's own
time in UTC, MSGID is the action, and MSG the entry as a JSON line or a CEF line (no BOM: MSG-ANY,
which CEF collectors expect). 32473 is the IANA example Private Enterprise Number (RFC 5612); a
deployment with its own PEN would change `SD_ID`.

Delivery guarantees differ by transport and are documented, not hidden:
* tcp / tls: one connection per batch, every frame written and drained before the batch counts as
  sent. Syslog has no application-level ack, so a receiver that dies mid-batch can lose what it had
  buffered; a refused / failed connection sends nothing and the batch is retried.
* udp: each datagram is checked for a pending ICMP "port unreachable" (``SO_ERROR``) right after it
  is sent, which on the local host catches a stopped receiver at the first message. Across a network
  that error arrives late or never: UDP syslog can lose messages silently — prefer tcp or tls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import ClassVar

from keyturn.audit.sinks.base import AuditEvent
from keyturn.audit.sinks.formats import render, severity
from keyturn.errors import AuditSinkUnavailable, ConfigError

SD_ID = "keyturn@32473"
APP_NAME = "keyturn"
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
MAX_UDP_MESSAGE = 60_000  # RFC 5426 allows truncation; well under the 65,507-byte IPv4 datagram limit


def sd_escape(value: str) -> str:
    """PARAM-VALUE escaping (RFC 5424 §6.3.3): ``"``, ``\\`` and ``]``."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_token(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most `limit` chars, ``-`` when empty."""
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)[:limit]
    return cleaned or "-"


def render_5424(event: AuditEvent, *, fmt: str, facility: int, hostname: str, procid: str) -> str:
    pri = facility * 8 + severity(event).syslog
    ts = event.ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    params = [("id", str(event.id))]
    if event.record_uid is not None:
        params.append(("record", event.record_uid))
    params.append(("hash", event.hash))
    sd = "[" + SD_ID + "".join(f' {k}="{sd_escape(v)}"' for k, v in params) + "]"
    return (f"<{pri}>1 {ts} {header_token(hostname, 255)} {APP_NAME} {header_token(procid, 128)} "
            f"{header_token(event.action, 32)} {sd} {render(event, fmt)}")


def frame_octet_counting(message: bytes) -> bytes:
    """RFC 6587 §3.4.1: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode() + b" " + message


class SyslogSink:
    kind: ClassVar[str] = "syslog"

    def __init__(
        self, name: str, host: str, *, port: int | None = None, protocol: str = "tls", fmt: str = "jsonl",
        facility: int = 10, hostname: str | None = None, procid: str | None = None,
        ca_bundle: Path | None = None, ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0,
    ) -> None:
        """`ssl_context` overrides `ca_bundle` (tests pass a trustme client context)."""
        if protocol not in DEFAULT_PORTS:
            raise ConfigError(f"audit sink {name}: unknown syslog protocol {protocol!r} (udp, tcp, tls)")
        self.name = name
        self.host = host
        self.protocol = protocol
        self.port = port or DEFAULT_PORTS[protocol]
        self.fmt = fmt
        self.facility = facility
        self.hostname = hostname or socket.gethostname()
        self.procid = procid or str(os.getpid())
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if protocol == "tls":
            try:
                self._ssl = ssl_context or ssl.create_default_context(
                    cafile=str(ca_bundle) if ca_bundle else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"audit sink {name}: cannot load CA bundle: {exc}",
                                  location=str(ca_bundle)) from exc

    @property
    def destination(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"

    def render(self, event: AuditEvent) -> bytes:
        return render_5424(event, fmt=self.fmt, facility=self.facility, hostname=self.hostname,
                           procid=self.procid).encode()

    def _unavailable(self, exc: BaseException, delivered: int = 0) -> AuditSinkUnavailable:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"audit sink {self.name}: {self.destination}: {detail or type(exc).__name__}"
        return AuditSinkUnavailable(message, delivered=delivered)

    async def send(self, messages: Sequence[bytes]) -> None:
        if not messages:
            return
        if self.protocol == "udp":
            await self._send_udp(messages)
        else:
            await self._send_stream(messages)

    async def _send_stream(self, messages: Sequence[bytes]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                )
                try:
                    writer.write(b"".join(frame_octet_counting(m) for m in messages))
                    await writer.drain()
                finally:
                    writer.close()
                    # The frames were drained; a rude close from the peer changes nothing.
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc

    async def _send_udp(self, messages: Sequence[bytes]) -> None:
        loop = asyncio.get_running_loop()
        sent = 0
        try:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            family, type_, proto, _, addr = infos[0]
            with socket.socket(family, type_, proto) as sock:
                sock.setblocking(False)
                sock.connect(addr)
                for message in messages:
                    sock.send(message[:MAX_UDP_MESSAGE])
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    sent += 1
        except OSError as exc:
            raise self._unavailable(exc, delivered=sent) from exc

    async def aclose(self) -> None:
        return None
