"""E-mail over SMTP with STARTTLS: one message per notification, one connection per batch.

Dialogue: connect → EHLO → STARTTLS (certificate checked against `ca_bundle` or the system store) →
EHLO → AUTH (when a username is configured; the password is a vault record's, never in the config) →
MAIL/RCPT/DATA per message → QUIT. With `starttls = true` a server that does not offer STARTTLS is an
error, never a fallback to clear text. stdlib `smtplib` runs in a thread, so the event loop that also
runs rotations never waits on the mail server. A message some recipients refused counts as delivered
(the others have it; retrying would duplicate it for them); one all refused stays spooled.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from keyturn.audit.sinks.base import AuditEvent
from keyturn.errors import ConfigError, NotificationUnavailable
from keyturn.notify.message import Notification, email_message
from keyturn.secret import Secret


class EmailChannel:
    kind: ClassVar[str] = "email"

    def __init__(
        self, name: str, host: str, *, port: int = 587, sender: str, to: Sequence[str],
        starttls: bool = True, username: str | None = None, password: Secret | None = None,
        ca_bundle: Path | None = None, timeout: float = 10.0,
    ) -> None:
        if password is not None and not starttls:
            raise ConfigError(f"notify {name}: SMTP AUTH needs starttls")
        self.name = name
        self._host, self._port = host, port
        self._sender, self._to = sender, list(to)
        self._starttls = starttls
        self._username, self._password = username, password
        self._timeout = timeout
        try:
            self._tls = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"notify {name}: cannot load CA bundle: {exc}",
                              location=str(ca_bundle)) from exc

    @property
    def destination(self) -> str:
        return f"smtp://{self._host}:{self._port} → {', '.join(self._to)}"

    def message(self, n: Notification) -> bytes:
        return email_message(n, sender=self._sender, to=self._to, rule=self.name)

    def render(self, event: AuditEvent) -> bytes:
        n = Notification.from_event(event)
        if n is None:
            raise ValueError(f"audit entry {event.id} ({event.action}) is not a finished rotation")
        return self.message(n)

    def _send(self, messages: Sequence[bytes]) -> None:
        delivered = 0
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                smtp.ehlo()
                if self._starttls:
                    if not smtp.has_extn("starttls"):
                        raise NotificationUnavailable(f"notify {self.name}: {self.destination} does not "
                                                      "offer STARTTLS; nothing sent")
                    smtp.starttls(context=self._tls)
                    smtp.ehlo()
                if self._username is not None and self._password is not None:
                    smtp.login(self._username, self._password.reveal())
                for body in messages:
                    smtp.sendmail(self._sender, self._to, body)
                    delivered += 1
        except NotificationUnavailable:
            raise
        except smtplib.SMTPResponseException as exc:
            raise NotificationUnavailable(
                f"notify {self.name}: {self.destination} answered {exc.smtp_code} "
                f"{_text(exc.smtp_error)}", delivered=delivered) from exc
        except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
            raise NotificationUnavailable(f"notify {self.name}: {self.destination}: "
                                          f"{type(exc).__name__}: {exc}", delivered=delivered) from exc

    async def send(self, messages: Sequence[bytes]) -> None:
        if messages:
            await asyncio.to_thread(self._send, messages)

    async def aclose(self) -> None:
        return None


def _text(raw: bytes | str) -> str:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())[:200]
