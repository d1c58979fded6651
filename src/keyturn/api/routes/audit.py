"""`GET /audit?since=&record=&action=&limit=`: read the hash-chained audit log.

`since` is an entry id (entries after it) or an ISO 8601 time (entries at or after it; a time without
zone is UTC). With `since` the entries come oldest first and `next_since` pages forward (follow it
until `entries` is empty); without it the newest `limit` entries come newest first.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel

from keyturn.api.auth import Permission, Principal, context, require
from keyturn.api.context import ApiContext
from keyturn.errors import RecordNotFound
from keyturn.vault import Vault
from keyturn.vault.storage import AuditRow

router = APIRouter(tags=["audit"])


class AuditEntryOut(BaseModel):
    id: int
    ts: datetime
    actor: str
    action: str
    record_uid: str | None
    details: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_since: int | None


def parse_since(raw: str) -> int | datetime:
    text = raw.strip()
    if text.isdigit() and len(text) < 19:
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[{
            "loc": ["query", "since"], "type": "value_error",
            "msg": "since must be an audit entry id or an ISO 8601 time"}]) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def query_audit(vault: Vault, since: int | datetime | None, record: str | None, action: str | None,
                limit: int) -> list[AuditRow]:
    q = sa.select(AuditRow)
    if isinstance(since, int):
        q = q.where(AuditRow.id > since)
    elif isinstance(since, datetime):
        # ts is stored as UTC ISO text with microseconds, so text order is time order.
        q = q.where(AuditRow.ts >= since.astimezone(UTC).isoformat(timespec="microseconds"))
    if record is not None:
        q = q.where(AuditRow.record_uid == record)
    if action is not None:
        q = q.where(AuditRow.action == action)
    q = q.order_by(AuditRow.id.asc() if since is not None else AuditRow.id.desc()).limit(limit)
    with vault.storage.session() as s:
        rows = list(s.scalars(q))
        s.expunge_all()
        return rows


def _record_uid(vault: Vault, ref: str) -> str:
    try:
        return vault.resolve(ref)
    except RecordNotFound:
        return ref  # a deleted record's entries stay readable by its uid


@router.get("/audit", response_model=AuditPage, summary="Audit entries")
async def audit(
    ctx: Annotated[ApiContext, Depends(context)],
    _p: Annotated[Principal, Depends(require(Permission.AUDIT_READ))],
    since: Annotated[str | None, Query(max_length=64, description="entry id or ISO 8601 time")] = None,
    record: Annotated[str | None, Query(max_length=512, description="record uid or unique title")] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    after = parse_since(since) if since is not None else None
    uid = await ctx.db(_record_uid, ctx.vault, record) if record is not None else None
    rows = await ctx.db(query_audit, ctx.vault, after, uid, action, limit)
    entries = [AuditEntryOut(id=r.id, ts=datetime.fromisoformat(r.ts), actor=r.actor, action=r.action,
                             record_uid=r.record_uid, details=json.loads(r.details), hash=r.hash)
               for r in rows]
    next_since = max((e.id for e in entries), default=None) if after is not None else None
    if after is not None and next_since is None and isinstance(after, int):
        next_since = after
    return AuditPage(entries=entries, next_since=next_since)


__all__ = ["router"]
