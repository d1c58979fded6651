"""The sink contract and the event it carries.

A `Sink` renders one `AuditEvent` to bytes (`render`, pure, called when the entry is spooled) and
delivers a batch of rendered messages in order (`send`). `send` either takes the whole batch or raises
`AuditSinkUnavailable(delivered=k)` saying that the first `k` messages arrived; the spool then drops
exactly those and retries the rest later, so nothing is lost and, except across a crash between a
successful send and the spool commit, nothing is sent twice (every message carries the audit id, so a
receiver can de-duplicate). `send` must not retry by itself: back-off belongs to the dispatcher.
Messages and errors never carry a secret (audit entries hold none by construction).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from keyturn.vault.storage import AuditRow


@dataclass(frozen=True)
class AuditEvent:
    """One audit entry as shipped: the stored fields, including both chain hashes, so a SIEM can
    re-check the chain's links on its side, and the chain head (newest id and keyed hash) when the
    entry was taken for shipping. The head lets a SIEM detect truncation: every id up to a head it
    has seen must arrive, and entry `head_id` must carry `head_hash`; entries deleted from the
    database before they were shipped, or a rebuilt tail, contradict a head shipped earlier."""

    id: int
    ts: datetime
    actor: str
    action: str
    record_uid: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str
    head_id: int | None = None
    head_hash: str | None = None

    @classmethod
    def from_row(cls, row: AuditRow, head: tuple[int, str] | None = None) -> AuditEvent:
        return cls(
            id=row.id, ts=datetime.fromisoformat(row.ts), actor=row.actor, action=row.action,
            record_uid=row.record_uid, details=json.loads(row.details), prev_hash=row.prev_hash,
            hash=row.hash, head_id=head[0] if head else None, head_hash=head[1] if head else None,
        )


class Sink(Protocol):
    kind: ClassVar[str]  # "jsonl", "syslog", "webhook"
    name: str  # the configured name; keys the spool and cursor

    @property
    def destination(self) -> str:
        """Where it delivers, for listings (no credentials)."""
        ...

    def render(self, event: AuditEvent) -> bytes:
        """One message for `event` (no framing); deterministic for a given event."""
        ...

    async def send(self, messages: Sequence[bytes]) -> None:
        """Deliver `messages` in order, or raise `AuditSinkUnavailable(delivered=k)`."""
        ...

    async def aclose(self) -> None: ...
