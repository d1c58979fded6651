"""The channel contract: a notification target is an audit sink (`keyturn.audit.sinks.base.Sink`)
that renders `Notification`s.

`message(n)` renders one notification to the bytes kept in the spool (pure, no I/O); `send(messages)`
delivers them in order or raises `NotificationUnavailable(delivered=k)` saying the first `k` arrived,
and never retries by itself: back-off, spooling and order belong to the dispatcher. `render(event)` is
the `Sink` method: the message for an audit entry without a vault lookup (title = record uid).
`destination` and every error text name the server only: a webhook URL's path is its token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

from keyturn.audit.sinks.base import AuditEvent
from keyturn.notify.message import Notification


class Channel(Protocol):
    kind: ClassVar[str]  # "slack", "email"
    name: str  # the rule's name; keys the spool and cursor

    @property
    def destination(self) -> str: ...

    def message(self, n: Notification) -> bytes: ...

    def render(self, event: AuditEvent) -> bytes: ...

    async def send(self, messages: Sequence[bytes]) -> None: ...

    async def aclose(self) -> None: ...
