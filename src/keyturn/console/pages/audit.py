"""The audit log: ``GET /audit`` (filtered, paged), ``GET /audit/chain`` (chain status) and
``POST /audit/export`` (a download).

Who: roles holding the API's ``audit:read`` (admins, auditors), as ``GET /audit``.

Filters: actor, action, record (uid or unique title; a deleted record's uid still works), and a time
range (``from`` / ``to``: an ISO 8601 time or an age like ``7d``, as `keyturn audit export` takes them).
Newest first, `PAGE` entries a page, paged server-side by entry id (``before=ID``), so a long chain
costs one indexed query per page. A bad filter value is shown inline with the CLI's wording.

Chain status is what `keyturn audit verify` computes (`AuditLog.verify`): intact, or the first entry
that was modified, deleted or reordered. It reads the whole chain, so it has its own page.

Export: the entries of a time range, oldest first, as JSON lines or CEF — `keyturn audit export`'s
formats and pages (`keyturn.audit.export`), streamed; audited as ``audit.export`` (output ``console``).
A POST with the CSRF token: an export is itself an audit entry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from keyturn.api.auth import Permission, context
from keyturn.audit.chain import AuditEntry
from keyturn.audit.export import FORMATS, audited, pages, parse_when, render, stamp
from keyturn.console.csrf import check_csrf
from keyturn.console.forms import read_form
from keyturn.console.render import render as render_page
from keyturn.console.session import ConsoleSession, require_session
from keyturn.errors import ConfigError, RecordNotFound
from keyturn.vault import Vault
from keyturn.vault.storage import AuditRow

router = APIRouter()
PAGE = 50
Reader = Annotated[ConsoleSession, Depends(require_session(permission=Permission.AUDIT_READ))]
Text = Annotated[str, Query(max_length=512)]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    record_uid: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass
class AuditPage:
    entries: list[AuditEntry]
    older: int | None          # `before` of the next (older) page, None on the last


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(id=row.id, ts=datetime.fromisoformat(row.ts), actor=row.actor, action=row.action,
                      record_uid=row.record_uid, details=json.loads(row.details), hash=row.hash)


def query(vault: Vault, f: AuditFilter, *, before: int | None = None, limit: int = PAGE) -> AuditPage:
    """Entries matching `f`, newest first, older than entry `before`; one statement."""
    q = sa.select(AuditRow)
    if before is not None:
        q = q.where(AuditRow.id < before)
    if f.actor is not None:
        q = q.where(AuditRow.actor == f.actor)
    if f.action is not None:
        q = q.where(AuditRow.action == f.action)
    if f.record_uid is not None:
        q = q.where(AuditRow.record_uid == f.record_uid)
    if f.start is not None:
        q = q.where(AuditRow.ts >= stamp(f.start))
    if f.end is not None:
        q = q.where(AuditRow.ts < stamp(f.end))
    with vault.storage.session() as s:
        rows = list(s.scalars(q.order_by(AuditRow.id.desc()).limit(limit + 1)))
        entries = [_entry(r) for r in rows[:limit]]
    return AuditPage(entries=entries, older=entries[-1].id if len(rows) > limit else None)


def _record_uid(vault: Vault, ref: str) -> str:
    try:
        return vault.resolve(ref)
    except RecordNotFound:
        return ref  # a deleted record's entries stay findable by its uid


def parse_range(since: str, until: str, *, now: datetime) -> tuple[datetime | None, datetime | None]:
    """``from`` / ``to`` as `keyturn audit export` parses ``--since`` / ``--until``; `ConfigError`."""
    start = parse_when(since, now=now, option="from") if since.strip() else None
    end = parse_when(until, now=now, option="to") if until.strip() else None
    if start is not None and end is not None and end <= start:
        raise ConfigError("to must be after from")
    return start, end


@router.get("/audit", include_in_schema=False)
async def audit_page(
    request: Request, _session: Reader, actor: Text = "", action: Text = "", record: Text = "",
    since: Annotated[str, Query(alias="from", max_length=64)] = "",
    until: Annotated[str, Query(alias="to", max_length=64)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    ctx = context(request)
    values = {"actor": actor, "action": action, "record": record, "from": since, "to": until}
    error = ""
    page = AuditPage(entries=[], older=None)
    try:
        start, end = parse_range(since, until, now=datetime.now(UTC))
    except ConfigError as exc:
        error = str(exc)
    else:
        uid = await ctx.db(_record_uid, ctx.vault, record.strip()) if record.strip() else None
        f = AuditFilter(actor=actor.strip() or None, action=action.strip() or None, record_uid=uid,
                        start=start, end=end)
        page = await ctx.db(query, ctx.vault, f, before=before)
    keep = {k: v for k, v in values.items() if v}
    return render_page(request, "audit.html", {
        "page": page, "values": values, "error": error, "export_error": "", "keep": keep, "formats": FORMATS,
        "first": before is None,
    }, status_code=422 if error else 200)


@router.get("/audit/chain", include_in_schema=False)
async def chain_page(request: Request, _session: Reader) -> Response:
    ctx = context(request)
    broken = await ctx.db(ctx.vault.audit.verify)
    count = (await ctx.db(ctx.vault.status)).audit_entries
    return render_page(request, "audit_chain.html", {"broken": broken, "count": count})


@router.post("/audit/export", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def export(request: Request, session: Reader) -> Response:
    ctx = context(request)
    form = await read_form(request)
    fmt = form.one("format", "jsonl")
    since = form.one("from").strip() or "7d"
    try:
        if fmt not in FORMATS:
            raise ConfigError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
        start, end = parse_range(since, form.one("to"), now=datetime.now(UTC))
    except ConfigError as exc:
        page = AuditPage(entries=[], older=None)
        values = {"actor": "", "action": "", "record": "", "from": since, "to": form.one("to")}
        return render_page(request, "audit.html", {"page": page, "values": values, "error": "",
                                                   "export_error": str(exc), "keep": {}, "formats": FORMATS,
                                                   "first": True}, status_code=422)
    assert start is not None

    async def lines() -> AsyncIterator[bytes]:
        count = 0
        chunks = pages(ctx.vault, start, end)
        while (page := await ctx.db(next, chunks, None)) is not None:
            count += len(page)
            yield "".join(render(event, fmt) + "\n" for event in page).encode()
        await ctx.db(audited, ctx.vault, session.actor, start, end, fmt, count, output="console")

    name = f"keyturn-audit-{start.strftime('%Y%m%dT%H%M%SZ')}.{'jsonl' if fmt == 'jsonl' else 'cef'}"
    media = "application/x-ndjson" if fmt == "jsonl" else "text/plain; charset=utf-8"
    headers: dict[str, Any] = {"Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(lines(), media_type=media, headers=headers)


__all__ = ["AuditFilter", "AuditPage", "parse_range", "query", "router"]
