"""Audit export: the entries of a time range, oldest first, as JSON lines or CEF — what `keyturn audit
export` writes and the console's audit page streams.

    start = parse_when("7d", now=now, option="--since")
    for page in pages(vault, start, None):
        for event in page:
            out.write(render(event, "jsonl") + "\\n")
    audited(vault, actor, start, None, "jsonl", count, output="stdout")

Pages are keyset pages by entry id (`PAGE` entries each), so memory stays bounded on a long chain.
Every export is itself audited (``audit.export``: range, format, count, where it went).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa

from keyturn.audit.sinks.base import AuditEvent
from keyturn.audit.sinks.formats import render
from keyturn.errors import ConfigError
from keyturn.vault import Vault
from keyturn.vault.storage import AuditRow

PAGE = 1000
Format = Literal["jsonl", "cef"]
FORMATS: tuple[Format, ...] = ("jsonl", "cef")


def parse_when(value: str, *, now: datetime, option: str) -> datetime:
    """An age in keyturn's duration syntax (``7d``, ``12h``, ``1d12h``: `keyturn.durations`) ago, or an
    ISO 8601 date or time (naive = UTC); `ConfigError` naming `option` otherwise."""
    from keyturn.durations import looks_like_duration, parse_duration

    if looks_like_duration(value):
        return now - parse_duration(value, what=option)
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option} {value!r}: expected an ISO 8601 time (2025-01-31, 2025-01-31T08:00:00Z) "
                          "or an age like 7d, 12h, 1h30m") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def stamp(when: datetime) -> str:
    """`when` as the chain stores ts (UTC ISO text with microseconds), so text order is time order."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def pages(vault: Vault, start: datetime, end: datetime | None, *,
          size: int = PAGE) -> Iterator[list[AuditEvent]]:
    """Entries with `start` <= ts < `end` (no end: up to now), oldest first, `size` per page."""
    last = 0
    while True:
        q = sa.select(AuditRow).where(AuditRow.id > last, AuditRow.ts >= stamp(start))
        if end is not None:
            q = q.where(AuditRow.ts < stamp(end))
        with vault.storage.session() as s:
            page = [AuditEvent.from_row(r) for r in s.scalars(q.order_by(AuditRow.id).limit(size))]
        if page:
            yield page
        if len(page) < size:
            return
        last = page[-1].id


def audited(vault: Vault, actor: str, start: datetime, end: datetime | None, fmt: str, count: int, *,
            output: str) -> None:
    """The export's own audit entry."""
    vault.audit.append("audit.export", actor=actor, details={
        "since": start.isoformat(), "until": end.isoformat() if end else None, "format": fmt,
        "count": count, "output": output,
    })


__all__ = ["FORMATS", "PAGE", "Format", "audited", "pages", "parse_when", "render", "stamp"]
