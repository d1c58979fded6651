"""Slack-compatible incoming webhook: one ``POST <url>`` of ``{"text": ...}`` per notification.

Slack, Mattermost and Rocket.Chat take this body. The URL is the credential (its path is the token),
so it comes from a vault record and is never shown: `destination` and errors name scheme, host and
port only, and httpx's own request log line (INFO, full URL) is rewritten the same way. Any non-2xx
answer, a redirect included, leaves the message spooled for retry.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import httpx

from keyturn.audit.sinks.base import AuditEvent
from keyturn.errors import ConfigError, NotificationUnavailable
from keyturn.notify.message import Notification, slack_message
from keyturn.secret import Secret


class _HideUrl(logging.Filter):
    """On the `httpx` logger: its "HTTP Request: POST <url>" line would show the token."""

    def __init__(self, secrets: tuple[str, ...], shown: str) -> None:
        super().__init__()
        self._secrets, self._shown = secrets, shown

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if any(s in msg for s in self._secrets):
            for s in self._secrets:
                msg = msg.replace(s, self._shown)
            record.msg, record.args = msg, None
        return True


class SlackChannel:
    kind: ClassVar[str] = "slack"

    def __init__(self, name: str, url: Secret, *, ca_bundle: Path | None = None, timeout: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self.name = name
        try:
            self._url = httpx.URL(url.reveal().strip())
        except httpx.InvalidURL:
            raise ConfigError(f"notify {name}: the webhook URL in url_record is not a URL") from None
        if self._url.scheme != "https" or not self._url.host:
            raise ConfigError(f"notify {name}: the webhook URL in url_record must be https://HOST/...")
        if client is None:
            try:
                verify: ssl.SSLContext | bool = (
                    ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"notify {name}: cannot load CA bundle: {exc}",
                                  location=str(ca_bundle)) from exc
            client = httpx.AsyncClient(verify=verify, timeout=timeout, follow_redirects=False)
        self._client = client
        path = self._url.raw_path.decode(errors="replace")
        self._hide = _HideUrl(tuple(x for x in (str(self._url), path) if len(x) > 1), self.destination)
        logging.getLogger("httpx").addFilter(self._hide)

    @property
    def destination(self) -> str:
        return f"https://{self._url.host}:{self._url.port or 443}/…"

    def message(self, n: Notification) -> bytes:
        return slack_message(n)

    def render(self, event: AuditEvent) -> bytes:
        n = Notification.from_event(event)
        if n is None:
            raise ValueError(f"audit entry {event.id} ({event.action}) is not a finished rotation")
        return self.message(n)

    async def send(self, messages: Sequence[bytes]) -> None:
        for i, body in enumerate(messages):
            try:
                resp = await self._client.post(self._url, content=body,
                                               headers={"Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                # Type only: httpx puts the request URL, token included, into some messages.
                raise NotificationUnavailable(f"notify {self.name}: {self.destination}: "
                                              f"{type(exc).__name__}", delivered=i) from None
            if not resp.is_success:
                raise NotificationUnavailable(f"notify {self.name}: {self.destination} answered HTTP "
                                              f"{resp.status_code}", delivered=i)

    async def aclose(self) -> None:
        logging.getLogger("httpx").removeFilter(self._hide)
        await self._client.aclose()
