"""One view of every managed account, and of recent rotations: the query behind `keyturn status`,
`keyturn rotation list`, `GET /accounts` and `GET /rotations`, and the one JSON schema they share.

An *account* is a record with a rotation profile. Its line says what it is (title, target, resource,
site), how its last rotation ended and when, when the scheduler next rotates it, and what needs a
person (`flags`):

    needs_attention   the scheduler stopped retrying it, or its last rotation needs a person
    unverified        its last rotation could not prove the new secret; recovery settles it
    stale_trust       its last rotation was refused by trust: the device presents a certificate or host
                      key other than the pinned one, or none is pinned (`keyturn device trust RECORD`)
    schedule_invalid  its stored schedule cannot be served (set it again)

Built for fleets: `list_accounts` runs exactly three SQL statements whatever the number of accounts —
one on the records table (metadata only: nothing is decrypted), one on the rotation journal (the newest
rotation per record, by a window function), one on the scheduler state — and parses each distinct
stored schedule once. A page (``limit``) filtered by metadata only is cut by the database instead
(`keyturn.selection.sql_where`): a count, then four statements bounded by the page: what the console's
accounts page and ``GET /accounts?limit=`` cost on a large fleet.

Schema (`Account`, `Rotation`, pydantic, so the OpenAPI document describes them): record uids are
``record_uid``, times are ISO 8601 UTC with ``Z``. The CLI prints ``model_dump(mode="json")`` of the
same models the API returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection, Engine

from keyturn.engine.journal import RotationRow, read_tx, rotations
from keyturn.engine.outcome import Outcome, RotationState
from keyturn.errors import ConfigError
from keyturn.scheduler.schedules import META_KEY as SCHEDULE_KEY
from keyturn.scheduler.schedules import ScheduleMemo
from keyturn.scheduler.state import schedule_state
from keyturn.selection import MetaRecord, Term, matches, meta_records, parse_filter, sql_order, sql_where
from keyturn.sites import META_KEY as SITE_KEY
from keyturn.sites import site_from_metas
from keyturn.tags import tags_of
from keyturn.vault.storage import RecordRow

FLAGS = ("needs_attention", "unverified", "stale_trust", "schedule_invalid")
NEVER = "never"                                  # --outcome never: accounts never rotated
RUNNING = RotationState.RUNNING.value
OUTCOMES = (*(o.value for o in Outcome), RUNNING)
TRUST_FAILURE = "trust failure"                  # how `keyturn.targets.peer_trust.Watch.reason` begins


def utc(t: datetime | None) -> datetime | None:
    return t.astimezone(UTC) if t is not None else None


# --- the schema ------------------------------------------------------------------------------------


class Account(BaseModel):
    """One managed account (a record with a rotation profile). No secret, nothing decrypted."""

    record_uid: str
    title: str
    type: str
    target: str = Field(description="target kind of the rotation profile")
    resource_uid: str | None = Field(description="the device / network record")
    site: str = Field(description="the site whose workers rotate it")
    schedule: str | None = Field(description="the schedule, described; null: on demand only")
    next_due: datetime | None = Field(description="when the scheduler next rotates it")
    last_rotation_id: str | None
    last_outcome: str | None = Field(description="outcome of the newest rotation ('running' while it "
                                                 "runs); null: never rotated")
    last_at: datetime | None = Field(description="when the newest rotation ended (or last moved)")
    last_reason: str = ""
    flags: list[str] = Field(default_factory=list, description=", ".join(FLAGS))
    attention: str = Field(default="", description="why it is flagged")
    tags: list[str] = Field(default_factory=list, description="the record's tags (`keyturn.tags`)")


class AccountList(BaseModel):
    accounts: list[Account]
    total: int = Field(description="accounts matching the filters, before limit/offset")
    limit: int | None
    offset: int


class Rotation(BaseModel):
    """One rotation from the journal (the same object in `keyturn rotation list --json`, `keyturn history
    --json` and the API)."""

    id: str
    record_uid: str
    title: str
    target: str
    state: str
    outcome: str | None
    reason: str
    last_step: str
    candidate_version: int | None = None
    old_version: int | None = None
    applied: str = ""
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    scripts: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def from_row(cls, row: RotationRow) -> Rotation:
        data = row.to_json()
        return cls(id=row.id, record_uid=row.record_uid, title=row.title, target=row.target,
                   state=data["state"], outcome=data["outcome"], reason=row.reason, last_step=row.last_step,
                   candidate_version=row.candidate_version, old_version=row.old_version, applied=row.applied,
                   started_at=utc(row.started_at), finished_at=utc(row.finished_at),
                   duration=data["duration"], scripts=data["scripts"])


class RotationList(BaseModel):
    rotations: list[Rotation]
    total: int = Field(description="rotations matching the filters, before limit/offset")
    limit: int
    offset: int


def dump(model: BaseModel) -> Any:
    """What the CLI prints for `--json`: the API's JSON of the same model."""
    return model.model_dump(mode="json")


# --- accounts --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountQuery:
    """Filters of the account view; `ConfigError` (checked by `check`) for an unknown outcome/flag."""

    filter: str | None = None
    outcome: str | None = None
    site: str | None = None
    flagged: bool = False
    tag: str | None = None

    @property
    def by_metadata(self) -> bool:
        """True when only the records' metadata decides (no outcome, site or flag filter): a page can
        then be cut before anything else about an account is read."""
        return self.outcome is None and self.site is None and not self.flagged

    def check(self) -> None:
        if self.filter is not None:
            parse_filter(self.filter)
        if self.outcome is not None and self.outcome not in (*OUTCOMES, NEVER):
            raise ConfigError(f"unknown outcome {self.outcome!r}; one of {', '.join((*OUTCOMES, NEVER))}")


def _latest_rotations(conn: Connection, uids: list[str] | None = None) -> dict[str, sa.Row[Any]]:
    """The newest rotation of every record (of `uids` only, when given), in one statement."""
    rn = sa.func.row_number().over(partition_by=rotations.c.record_uid,
                                   order_by=(rotations.c.started_at.desc(), rotations.c.id.desc()))
    inner = sa.select(rotations.c.id, rotations.c.record_uid, rotations.c.state, rotations.c.outcome,
                      rotations.c.reason, rotations.c.started_at, rotations.c.updated_at,
                      rotations.c.finished_at, rn.label("rn"))
    if uids is not None:
        inner = inner.where(rotations.c.record_uid.in_(uids))
    sub = inner.subquery()
    return {r.record_uid: r for r in conn.execute(sa.select(sub).where(sub.c.rn == 1))}


def _selected(rec: MetaRecord, terms: list[Term], tag: str | None) -> bool:
    return rec.profile is not None and matches(rec, terms) and (tag is None or tag in tags_of(rec.meta))


def _resource_meta(rec: MetaRecord, metas: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    resource = (rec.profile or {}).get("resource")
    return metas.get(resource) if isinstance(resource, str) else None


def _account(rec: MetaRecord, resource_meta: dict[str, Any] | None, last: sa.Row[Any] | None,
             state: sa.Row[Any] | None, schedules: ScheduleMemo) -> Account:
    profile = rec.profile or {}
    flags: list[str] = []
    attention = ""
    try:
        site = site_from_metas(rec.meta, resource_meta)
    except ConfigError:
        site = "(malformed)"
    last_outcome = last_reason = ""
    last_at = None
    if last is not None:
        last_outcome = last.outcome or last.state
        last_reason = last.reason or ""
        last_at = last.finished_at or last.updated_at
        if last.state == RotationState.NEEDS_ATTENTION.value:
            flags.append("needs_attention")
            attention = last_reason
        elif last.state == RotationState.UNVERIFIED.value:
            flags.append("unverified")
            attention = last_reason
        if last.state == RotationState.DONE.value and last_reason.startswith(TRUST_FAILURE):
            flags.append("stale_trust")
            attention = attention or last_reason
    if state is not None and state.needs_attention and "needs_attention" not in flags:
        flags.insert(0, "needs_attention")
        attention = state.attention_reason or attention
    described = next_due = None
    raw = rec.meta.get(SCHEDULE_KEY)
    if raw is not None:
        parsed = schedules.get(raw)
        if isinstance(parsed, ConfigError):
            flags.append("schedule_invalid")
            attention = attention or str(parsed)
            described = str(raw.get("spec") if isinstance(raw, dict) else raw)
        else:
            sched, slot = parsed
            described = sched.describe()
            if state is not None and state.fingerprint == sched.fingerprint:
                next_due = state.next_due
            if next_due is None and not (state is not None and state.needs_attention):
                next_due = sched.due(slot, rec.uid)[0]
    return Account(
        record_uid=rec.uid, title=rec.title, type=rec.type, target=str(profile.get("target") or ""),
        resource_uid=profile.get("resource") or None, site=site, schedule=described,
        next_due=utc(next_due), last_rotation_id=last.id if last is not None else None,
        last_outcome=last_outcome or None, last_at=utc(last_at), last_reason=last_reason, flags=flags,
        attention=attention, tags=tags_of(rec.meta))


def list_accounts(engine: Engine, query: AccountQuery | None = None, *, limit: int | None = None,
                  offset: int = 0, now: datetime | None = None) -> AccountList:
    """Every managed account matching `query`, ordered by title (then uid); `limit`/`offset` page it.
    Three SQL statements in one read transaction (see the module docstring). A page filtered by
    metadata only (`AccountQuery.by_metadata`) reads the journal and scheduler state of its own
    accounts only, so a page of a large fleet costs the records query and little more."""
    query = query or AccountQuery()
    query.check()
    terms = parse_filter(query.filter) if query.filter is not None else []
    paged = limit is not None and query.by_metadata
    in_sql = limit is not None and query.site is None and not query.flagged
    with read_tx(engine) as conn:
        where = sql_where(conn.dialect.name, terms, query.tag) if in_sql else None
        if where is not None:
            if query.outcome is not None:
                where.append(_last_outcome() == query.outcome)
            return _sql_page(conn, where, limit or 0, offset, now)
        records = meta_records(conn, profiled=True, also_meta_key=SITE_KEY)
        if paged:
            chosen = sorted((r for r in records if _selected(r, terms, query.tag)),
                            key=lambda r: (r.title.casefold(), r.uid))
            page_uids = [r.uid for r in chosen[offset:offset + (limit or 0)]]
            latest = _latest_rotations(conn, page_uids)
            states = {r.record_uid: r for r in conn.execute(
                schedule_state.select().where(schedule_state.c.record_uid.in_(page_uids)))}
        else:
            latest = _latest_rotations(conn)
            states = {r.record_uid: r for r in conn.execute(schedule_state.select())}
    metas = {r.uid: dict(r.meta) for r in records}
    schedules = ScheduleMemo(now or datetime.now(UTC))
    if paged:
        accounts = [_account(r, _resource_meta(r, metas), latest.get(r.uid), states.get(r.uid), schedules)
                    for r in chosen[offset:offset + (limit or 0)]]
        return AccountList(accounts=accounts, total=len(chosen), limit=limit, offset=offset)
    out = []
    for rec in records:
        if not _selected(rec, terms, query.tag):
            continue
        acc = _account(rec, _resource_meta(rec, metas), latest.get(rec.uid), states.get(rec.uid), schedules)
        if query.site is not None and acc.site != query.site:
            continue
        if query.outcome is not None and (acc.last_outcome or NEVER) != query.outcome:
            continue
        if query.flagged and not acc.flags:
            continue
        out.append(acc)
    out.sort(key=lambda a: (a.title.casefold(), a.record_uid))
    page = out[offset:offset + limit] if limit is not None else out[offset:]
    return AccountList(accounts=page, total=len(out), limit=limit, offset=offset)


def _sql_page(conn: Connection, where: list[sa.ColumnElement[bool]], limit: int, offset: int,
              now: datetime | None) -> AccountList:
    """One page cut by the database (`keyturn.selection.sql_where`): a count, the page's records, their
    resources, their newest rotations and scheduler state (the last four bounded by the page)."""
    total = int(conn.execute(sa.select(sa.func.count()).select_from(RecordRow).where(*where)).scalar_one())
    rows = conn.execute(sa.select(RecordRow.uid, RecordRow.title, RecordRow.type, RecordRow.meta_json)
                        .where(*where).order_by(*sql_order(conn.dialect.name)).limit(limit).offset(offset))
    records = [MetaRecord(uid, title, type_, _object(meta)) for uid, title, type_, meta in rows]
    wanted = {r for rec in records if isinstance(r := (rec.profile or {}).get("resource"), str)}
    metas = {uid: _object(meta) for uid, meta in conn.execute(
        sa.select(RecordRow.uid, RecordRow.meta_json).where(RecordRow.uid.in_(wanted)))} if wanted else {}
    uids = [rec.uid for rec in records]
    latest = _latest_rotations(conn, uids)
    states = {r.record_uid: r for r in conn.execute(
        schedule_state.select().where(schedule_state.c.record_uid.in_(uids)))}
    schedules = ScheduleMemo(now or datetime.now(UTC))
    accounts = [_account(rec, _resource_meta(rec, metas), latest.get(rec.uid), states.get(rec.uid), schedules)
                for rec in records]
    return AccountList(accounts=accounts, total=total, limit=limit, offset=offset)


def _last_outcome() -> sa.ColumnElement[str]:
    """The account's `last_outcome` in SQL (its newest rotation's outcome, else state; `NEVER` without
    one): a correlated lookup of the newest rotation, as `_latest_rotations` orders them."""
    newest = (sa.select(sa.func.coalesce(sa.func.nullif(rotations.c.outcome, ""),
                                         sa.func.nullif(rotations.c.state, ""), NEVER))
              .where(rotations.c.record_uid == RecordRow.uid)
              .order_by(rotations.c.started_at.desc(), rotations.c.id.desc()).limit(1)
              .correlate(RecordRow).scalar_subquery())
    return sa.func.coalesce(newest, NEVER)


def _object(meta_json: str) -> dict[str, Any]:
    meta = json.loads(meta_json)
    return meta if isinstance(meta, dict) else {}


def one_account(engine: Engine, uid: str, *, now: datetime | None = None) -> Account | None:
    """The account line of one record (as `list_accounts` gives it), or None when the record has no
    rotation profile or does not exist; four small statements, whatever the size of the fleet."""
    meta_of = sa.select(RecordRow.uid, RecordRow.title, RecordRow.type, RecordRow.meta_json)
    with read_tx(engine) as conn:
        row = conn.execute(meta_of.where(RecordRow.uid == uid)).first()
        if row is None:
            return None
        rec = MetaRecord(row.uid, row.title, row.type, json.loads(row.meta_json))
        if rec.profile is None:
            return None
        resource = rec.profile.get("resource")
        res_row = (conn.execute(meta_of.where(RecordRow.uid == resource)).first()
                   if isinstance(resource, str) else None)
        latest = (rotations.select().where(rotations.c.record_uid == uid)
                  .order_by(rotations.c.started_at.desc(), rotations.c.id.desc()).limit(1))
        last = conn.execute(latest).first()
        state = conn.execute(schedule_state.select().where(schedule_state.c.record_uid == uid)).first()
    res_meta = json.loads(res_row.meta_json) if res_row is not None else None
    return _account(rec, res_meta, last, state, ScheduleMemo(now or datetime.now(UTC)))


# --- rotations -------------------------------------------------------------------------------------


def _outcome_clause(outcome: str) -> sa.ColumnElement[bool]:
    if outcome not in OUTCOMES:
        raise ConfigError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
    if outcome == RUNNING:
        return rotations.c.state == RUNNING
    return rotations.c.outcome == outcome


def list_rotations(engine: Engine, *, record_uid: str | None = None, outcome: str | None = None,
                   since: datetime | None = None, limit: int = 50, offset: int = 0) -> RotationList:
    """Rotations newest first, filtered by record, outcome ('running' for those in flight) and start time
    (at or after `since`); two statements (the page and the total)."""
    conds: list[sa.ColumnElement[bool]] = []
    if record_uid is not None:
        conds.append(rotations.c.record_uid == record_uid)
    if outcome is not None:
        conds.append(_outcome_clause(outcome))
    if since is not None:
        conds.append(rotations.c.started_at >= since.astimezone(UTC))
    page = (rotations.select().where(*conds)
            .order_by(rotations.c.started_at.desc(), rotations.c.id.desc()).limit(limit).offset(offset))
    with read_tx(engine) as conn:
        rows = [_rotation(m) for m in conn.execute(page).mappings()]
        count = sa.select(sa.func.count()).select_from(rotations).where(*conds)
        total = int(conn.execute(count).scalar_one())
    return RotationList(rotations=rows, total=total, limit=limit, offset=offset)


def _rotation(m: sa.RowMapping) -> Rotation:
    started, finished, updated = m["started_at"], m["finished_at"], m["updated_at"]
    end = finished or updated
    try:
        scripts = json.loads(m["scripts"] or "[]")
    except ValueError:
        scripts = []
    return Rotation(
        id=m["id"], record_uid=m["record_uid"], title=m["title"], target=m["target"], state=m["state"],
        outcome=m["outcome"], reason=m["reason"] or "", last_step=m["last_step"] or "",
        candidate_version=m["candidate_version"], old_version=m["old_version"], applied=m["applied"] or "",
        started_at=utc(started), finished_at=utc(finished),
        duration=round(max(0.0, (end - started).total_seconds()), 3) if started and end else None,
        scripts=scripts if isinstance(scripts, list) else [])


def parse_since(raw: str) -> datetime:
    """An ISO 8601 time (a time without zone is UTC); `ConfigError` otherwise."""
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {raw!r}: expected an ISO 8601 time such as 2026-01-31 or "
                          "2026-01-31T08:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


__all__ = ["FLAGS", "NEVER", "OUTCOMES", "Account", "AccountList", "AccountQuery", "Rotation", "RotationList",
           "dump", "list_accounts", "list_rotations", "one_account", "parse_since"]
