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


def parse_when(value: str, *, now: datetime, option: str) -> datetime:
    """`keyturn.audit.export.parse_when`, a malformed value ending the command as a usage error."""
    from keyturn.audit.export import parse_when as parse
    from keyturn.errors import ConfigError

    try:
        return parse(value, now=now, option=option)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


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
    from keyturn.audit.export import audited, pages, render

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
        count = 0
        try:
            for page in pages(vault, start, end):
                for event in page:
                    out.write(render(event, fmt) + "\n")
                count += len(page)
        finally:
            if output is not None:
                out.close()
            else:
                out.flush()
        audited(vault, actor(), start, end, fmt, count, output="file" if output is not None else "stdout")
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
