"""`keyturn audit export` (entries in a time range as JSON lines or CEF) and `keyturn audit sinks`
(configured sinks with their cursor and backlog; `--deliver` runs one delivery pass standalone)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from keyturn.cli.output import EXIT_USAGE, actor, echo_json, fail, handle_errors, open_vault, table

_PAGE = 1000


def parse_when(value: str, *, now: datetime, option: str) -> datetime:
    """An age in keyturn's duration syntax (``7d``, ``12h``, ``1d12h``: `keyturn.durations`) ago, or an
    ISO 8601 date or time (naive = UTC)."""
    from keyturn.durations import looks_like_duration, parse_duration

    if looks_like_duration(value):
        return now - parse_duration(value, what=option)
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} {value!r}: expected an ISO 8601 time (2025-01-31, 2025-01-31T08:00:00Z) "
             "or an age like 7d, 12h, 1h30m", EXIT_USAGE)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _stamp(when: datetime) -> str:
    # The chain stores ts as this exact ISO text (UTC, microseconds), so text order is time order.
    return when.astimezone(UTC).isoformat(timespec="microseconds")


@handle_errors
def export(
    since: Annotated[str, typer.Option("--since", help="Start: ISO 8601 time (naive = UTC) or an age "
                                                      "like 7d, 12h, 30m.", show_default=False)],
    until: Annotated[str | None, typer.Option("--until", show_default=False,
                                              help="End (exclusive), same forms; default now.")] = None,
    fmt: Annotated[Literal["jsonl", "cef"], typer.Option("--format", help="jsonl or cef.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", show_default=False, dir_okay=False,
                                                help="Write to FILE (mode 0600) instead of stdout.")] = None,
) -> None:
    """Audit entries from --since up to --until, oldest first, one per line; the export is audited."""
    import sqlalchemy as sa

    from keyturn.audit.sinks.base import AuditEvent
    from keyturn.audit.sinks.formats import render
    from keyturn.vault.storage import AuditRow

    now = datetime.now(UTC)
    start = parse_when(since, now=now, option="--since")
    end = parse_when(until, now=now, option="--until") if until is not None else None
    if end is not None and end <= start:
        fail("--until must be after --since", EXIT_USAGE)
    with open_vault() as vault:
        out = sys.stdout
        if output is not None:
            try:
                fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError as exc:
                fail(f"cannot write {output}: {exc.strerror or exc}")
            out = os.fdopen(fd, "w", encoding="utf-8")
        count, last = 0, 0
        try:
            while True:  # keyset pages by id: bounded memory on a long chain
                q = sa.select(AuditRow).where(AuditRow.id > last, AuditRow.ts >= _stamp(start))
                if end is not None:
                    q = q.where(AuditRow.ts < _stamp(end))
                with vault.storage.session() as s:
                    page = [AuditEvent.from_row(r) for r in s.scalars(q.order_by(AuditRow.id).limit(_PAGE))]
                for event in page:
                    out.write(render(event, fmt) + "\n")
                count += len(page)
                if len(page) < _PAGE:
                    break
                last = page[-1].id
        finally:
            if output is not None:
                out.close()
            else:
                out.flush()
        vault.audit.append("audit.export", actor=actor(), details={
            "since": start.isoformat(), "until": end.isoformat() if end else None, "format": fmt,
            "count": count, "output": "file" if output is not None else "stdout",
        })
    if output is not None:
        typer.echo(f"exported {count} audit entries to {output}", err=True)


@handle_errors
def sinks(
    deliver: Annotated[bool, typer.Option("--deliver", help="Run one delivery pass first (standalone, "
                                                            "without `keyturn serve`).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """Configured audit sinks ([[keyturn.audit_sinks]] in keyturn.toml): cursor, spool and backlog.
    With --deliver, exit 1 when a sink could not take everything."""
    import asyncio
    import dataclasses

    from keyturn.audit.sinks.dispatcher import Dispatcher, SinkStatus

    with open_vault() as vault:
        if not vault.settings.audit_sinks:
            if as_json:
                echo_json([])
            else:
                typer.echo("no audit sinks configured (add [[keyturn.audit_sinks]] tables to keyturn.toml)")
            return
        dispatcher = Dispatcher.from_settings(vault.settings, vault)

        async def go() -> tuple[int | None, list[SinkStatus]]:
            try:
                delivered = await dispatcher.deliver_once() if deliver else None
                return delivered, await asyncio.to_thread(dispatcher.status)
            finally:
                await dispatcher.aclose()

        delivered, rows = asyncio.run(go())
    if as_json:
        echo_json([{**dataclasses.asdict(r), "backlog": r.backlog} for r in rows])
    else:
        if delivered is not None:
            typer.echo(f"delivered {delivered} messages")
        table(["NAME", "TYPE", "DESTINATION", "FORMAT", "CURSOR", "SPOOLED", "BACKLOG", "DELIVERED", "DROPS",
               "FAILURES", "LAST ERROR"],
              [(r.name, r.kind, r.destination, r.format, r.cursor, r.spooled, r.backlog, r.delivered, r.drops,
                r.failures, r.last_error or "") for r in rows])
    if deliver and any(r.failures for r in rows):
        raise typer.Exit(1)
