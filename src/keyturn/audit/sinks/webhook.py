"""HTTPS webhook sink: POST a batch of audit entries, HMAC-signed.

Request: ``POST <url>`` with body ``{"events":[<entry>,...]}`` (``application/json``, entries as in
the JSON-lines format) or, with ``format = "cef"``, one CEF line per entry (``text/plain``). Headers:

    X-Keyturn-Timestamp: <unix seconds>
    X-Keyturn-Signature: sha256=<hex HMAC-SHA256(key, "<timestamp>." + body)>

A receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in constant time
and refuses stale timestamps (replay). The key is the password of a vault record (`hmac_record`),
never in the config file. Any non-2xx answer, redirect included, leaves the batch spooled for retry:
a misconfigured receiver (wrong key → 401) costs delay, never events.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import httpx

from keyturn.audit.sinks.base import AuditEvent
from keyturn.audit.sinks.formats import render
from keyturn.errors import AuditSinkUnavailable, ConfigError
from keyturn.secret import Secret

SIGNATURE_HEADER = "X-Keyturn-Signature"
TIMESTAMP_HEADER = "X-Keyturn-Timestamp"


def sign(key: Secret, timestamp: str, body: bytes) -> str:
    """The `X-Keyturn-Signature` value for `body` sent at `timestamp`."""
    mac = hmac.new(key.reveal().encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookSink:
    kind: ClassVar[str] = "webhook"

    def __init__(
        self, name: str, url: str, key: Secret, *, fmt: str = "jsonl", ca_bundle: Path | None = None,
        timeout: float = 10.0, client: httpx.AsyncClient | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        """`client` is injected by tests (MockTransport / a trustme CA); otherwise one is built that
        verifies TLS against `ca_bundle` or the system store and never follows redirects."""
        self.name = name
        self._url = httpx.URL(url)
        if self._url.scheme != "https":
            raise ConfigError(f"audit sink {name}: webhook url must be https://")
        self._key = key
        self.fmt = fmt
        self._now = now
        if client is None:
            try:
                verify: ssl.SSLContext | bool = (
                    ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"audit sink {name}: cannot load CA bundle: {exc}",
                                  location=str(ca_bundle)) from exc
            client = httpx.AsyncClient(verify=verify, timeout=timeout, follow_redirects=False)
        self._client = client

    @property
    def destination(self) -> str:
        # Host and path only: a URL may carry credentials or tokens in userinfo / query.
        return f"https://{self._url.host}:{self._url.port or 443}{self._url.path}"

    def render(self, event: AuditEvent) -> bytes:
        return render(event, self.fmt).encode()

    def body(self, messages: Sequence[bytes]) -> tuple[bytes, str]:
        if self.fmt == "jsonl":
            return b'{"events":[' + b",".join(messages) + b"]}", "application/json"
        return b"".join(m + b"\n" for m in messages), "text/plain; charset=utf-8"

    async def send(self, messages: Sequence[bytes]) -> None:
        if not messages:
            return
        body, ctype = self.body(messages)
        ts = str(int(self._now()))
        headers = {"Content-Type": ctype, TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(self._key, ts, body)}
        try:
            resp = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise AuditSinkUnavailable(
                f"audit sink {self.name}: {self.destination}: {type(exc).__name__}: {exc}"
            ) from exc
        if not resp.is_success:
            raise AuditSinkUnavailable(f"audit sink {self.name}: {self.destination} answered HTTP "
                                       f"{resp.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
