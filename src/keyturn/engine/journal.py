"""The rotation journal: one row per rotation, its steps, and the account lock table.

Tables live in the vault's database (same SQLAlchemy engine; created by the Alembic revision
`0002_rotations`). Nothing secret is ever written here: steps carry a status and a one-line message,
scripts' output is stored as the runner returns it (already redacted).

A step is written once, as the audit entry ``rotation.<step>`` (details: rotation_id, status, message,
worker; `kt_audit.rotation_id` indexes them, revision `0009_audit_rotation`), in the same transaction
as the rotation row's update and appended to the chain with the other entries of that transaction.
`Journal.steps` reads them back in chain order; rotations journaled before that revision have their
steps in `rotation_steps` (kept, no longer written), read first.

A rotation row is created before the lock is taken and before the candidate is written ahead, and its
`state` stays `running` (or `unverified` / `needs_attention`) until an outcome is final, so recovery
finds every unfinished rotation from this table alone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from keyturn.engine.outcome import Outcome, RotationState, ScriptSummary, StepStatus, state_for
from keyturn.errors import StorageUnavailable
from keyturn.holders import HOST, worker_label
from keyturn.vault.storage import (
    AuditRow,
    UTCDateTime,
    ambient_audit_batch,
    ambient_connection,
    flush_ambient,
    lock_hold_ended,
)

if TYPE_CHECKING:
    from keyturn.engine.ports import AuditLike

metadata = sa.MetaData()

rotations = sa.Table(
    "rotations", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("record_uid", sa.String(64), nullable=False, index=True),
    sa.Column("title", sa.String(512), nullable=False, server_default=""),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("lock_key", sa.String(512), nullable=False, server_default=""),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("outcome", sa.String(32), nullable=True),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("last_step", sa.String(32), nullable=False, server_default=""),
    sa.Column("candidate_version", sa.Integer, nullable=True),
    sa.Column("old_version", sa.Integer, nullable=True),
    sa.Column("applied", sa.String(16), nullable=False, server_default=""),
    sa.Column("scripts", sa.Text, nullable=False, server_default="[]"),
    sa.Column("host", sa.String(255), nullable=False, server_default=""),
    sa.Column("pid", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
)

rotation_steps = sa.Table(
    "rotation_steps", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rotation_id", sa.String(32), sa.ForeignKey("rotations.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("step", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("worker", sa.String(320), nullable=False, server_default=""),   # who wrote it: host, pid, site
)

_AUDIT = AuditRow.__table__
assert isinstance(_AUDIT, sa.Table)
# A rotation's steps in chain order (index on rotation_id); the action filter leaves out entries that
# merely name the rotation (a version swap, a grace sweep), `is_step` the ones written before 0009.
_SELECT_STEP_ENTRIES = sa.select(_AUDIT.c.action, _AUDIT.c.ts, _AUDIT.c.details).where(
    _AUDIT.c.rotation_id == sa.bindparam("rid"), _AUDIT.c.action.startswith("rotation.")
).order_by(_AUDIT.c.id)
_SELECT_LEGACY_STEPS = rotation_steps.select().where(rotation_steps.c.rotation_id == sa.bindparam("rid")) \
    .order_by(rotation_steps.c.id)

#: One step to journal: (step, status, message, rotation columns it sets).
StepSpec = tuple[str, StepStatus, str, dict[str, Any]]

rotation_locks = sa.Table(
    "rotation_locks", metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("owner", sa.String(32), nullable=False),
    sa.Column("host", sa.String(255), nullable=False, server_default=""),
    sa.Column("pid", sa.Integer, nullable=False, server_default="0"),
    sa.Column("expires_at", sa.Float, nullable=False),   # epoch seconds: compared, never displayed
    sa.Column("token", sa.String(32), nullable=False, server_default=""),   # fencing: new per acquisition
)

OPEN_STATES = (RotationState.RUNNING, RotationState.UNVERIFIED, RotationState.NEEDS_ATTENTION)


class Bound(NamedTuple):
    """A statement or condition built once with named parameters, and the parameters of one use (the
    account lock's fence and release: the same statement for every rotation, so it is never rebuilt
    and SQLAlchemy's compiled form is found by a memoized cache key)."""

    clause: Any
    params: Mapping[str, Any]


# The rotation row's writes, built once (a statement built per call cost more CPU than SQLite running it).
_START_COLUMNS = ("id", "record_uid", "title", "target", "lock_key", "state", "reason", "last_step",
                  "scripts", "host", "pid", "started_at", "updated_at")
_INSERT_ROTATION = rotations.insert()
# The INSERT writes only if the record has no open rotation (`open_rotations`); RETURNING, not
# rowcount: psycopg reports no row count for an INSERT ... SELECT here.
_START_VALUES = {k: sa.bindparam(f"v_{k}", type_=rotations.c[k].type) for k in _START_COLUMNS}
_INSERT_UNLESS_OPEN = rotations.insert().from_select(
    list(_START_COLUMNS),
    sa.select(*_START_VALUES.values()).where(
        ~sa.exists().where(rotations.c.record_uid == _START_VALUES["record_uid"],
                           rotations.c.state.in_([s.value for s in OPEN_STATES]))),
).returning(rotations.c.id)


@functools.lru_cache(maxsize=64)
def _update_rotation(columns: tuple[str, ...], only_if: sa.ColumnElement[bool] | None) -> sa.Update:
    """The rotation row's UPDATE of `columns` (parameters ``k_id``, ``v_<column>``), built once per set
    of columns and fence condition (a `Bound` clause, itself built once)."""
    update = rotations.update().where(rotations.c.id == sa.bindparam("k_id")).values(
        {k: sa.bindparam(f"v_{k}", type_=rotations.c[k].type) for k in columns})
    return update if only_if is None else update.where(only_if)


@functools.lru_cache(maxsize=64)
def _returning_id(update: sa.Update) -> sa.Update:
    return update.returning(rotations.c.id)


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction; on SQLite it starts as ``BEGIN IMMEDIATE`` (the vault's storage hook) so a
    read-then-write cannot deadlock with another process's writer. Inside a vault unit of work
    (`Storage.unit`) on this thread it is the unit's connection, committed with the unit."""
    ambient = ambient_connection(engine)
    if ambient is not None:
        yield ambient
        return
    info: dict[Any, Any] = {}
    try:
        with engine.connect() as conn:
            conn.execution_options(keyturn_write=True)
            info = conn.info
            with conn.begin():
                yield conn
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise StorageUnavailable(f"rotation journal unavailable: {type(exc.orig).__name__}") from exc
    finally:
        lock_hold_ended(info)


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    ambient = ambient_connection(engine)
    if ambient is not None:
        yield ambient
        return
    try:
        with engine.connect() as conn:
            yield conn
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise StorageUnavailable(f"rotation journal unavailable: {type(exc.orig).__name__}") from exc


def _now() -> datetime:
    return datetime.now(UTC)



@dataclass(frozen=True, slots=True)
class StepRow:
    step: str
    status: StepStatus
    message: str
    at: datetime
    worker: str = ""


@dataclass(frozen=True, slots=True)
class RotationRow:
    id: str
    record_uid: str
    title: str
    target: str
    lock_key: str
    state: RotationState
    outcome: Outcome | None
    reason: str
    last_step: str
    candidate_version: int | None
    old_version: int | None
    applied: str
    scripts: tuple[ScriptSummary, ...]
    host: str
    pid: int
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def duration(self) -> float:
        end = self.finished_at or self.updated_at
        return max(0.0, (end - self.started_at).total_seconds())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "record_uid": self.record_uid, "title": self.title, "target": self.target,
            "state": str(self.state), "outcome": str(self.outcome) if self.outcome else None,
            "reason": self.reason, "last_step": self.last_step,
            "candidate_version": self.candidate_version, "old_version": self.old_version,
            "applied": self.applied, "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration": round(self.duration, 3), "scripts": [s.to_json() for s in self.scripts],
        }


def _row(m: sa.RowMapping) -> RotationRow:
    started = m["started_at"]
    updated = m["updated_at"]
    assert started is not None and updated is not None
    return RotationRow(
        id=m["id"], record_uid=m["record_uid"], title=m["title"], target=m["target"],
        lock_key=m["lock_key"], state=RotationState(m["state"]),
        outcome=Outcome(m["outcome"]) if m["outcome"] else None, reason=m["reason"],
        last_step=m["last_step"], candidate_version=m["candidate_version"],
        old_version=m["old_version"], applied=m["applied"],
        scripts=tuple(ScriptSummary.from_json(s) for s in json.loads(m["scripts"] or "[]")),
        host=m["host"], pid=m["pid"], started_at=started, updated_at=updated,
        finished_at=m["finished_at"],
    )


def finish_columns(outcome: Outcome, reason: str) -> dict[str, Any]:
    """The rotation row's columns for its outcome (`unverified` / `needs_attention` keep it open);
    also usable as a step's fields, so the outcome lands with the last steps in one UPDATE."""
    state = state_for(outcome)
    now = _now()
    return {"state": state.value, "outcome": outcome.value, "reason": reason, "updated_at": now,
            "finished_at": now if state is RotationState.DONE else None}


def step_entries(rotation_id: str, record_uid: str, actor: str, steps: Sequence[StepSpec],
                 last_details: Mapping[str, Any] | None = None,
                 ) -> list[tuple[str, str, str | None, Mapping[str, Any] | None]]:
    """The audit entries (`AuditLog.append_many_on`) that journal `steps`: ``rotation.<step>`` with
    rotation_id, status, message and the writing worker (host, pid, site); `last_details` adds to the
    last one's details (never replacing those four)."""
    worker = worker_label()
    out: list[tuple[str, str, str | None, Mapping[str, Any] | None]] = []
    for i, (step, status, message, _fields) in enumerate(steps):
        extra = last_details if last_details is not None and i == len(steps) - 1 else {}
        out.append((f"rotation.{step}", actor, record_uid,
                    {**extra, "rotation_id": rotation_id, "status": status.value, "message": message,
                     "worker": worker}))
    return out


class Journal:
    """Durable record of rotations and their steps. Every method commits before returning."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        """Create the journal tables directly (tests on a bare engine; the vault uses Alembic)."""
        metadata.create_all(self.engine)

    def start(self, *, rotation_id: str, record_uid: str, title: str, target: str, lock_key: str,
              last_step: str = "", unless_open: bool = False) -> bool:
        """A new running rotation. `last_step`: the step its caller journals next in the same transaction
        with `steps_on(..., row=False)`, so the rotation row is written once. `unless_open`: write it
        only if the record has no open rotation (`open_rotations`), checked by the INSERT itself;
        returns whether it was written."""
        now = _now()
        values = {"id": rotation_id, "record_uid": record_uid, "title": title, "target": target,
                  "lock_key": lock_key, "state": RotationState.RUNNING.value, "reason": "",
                  "last_step": last_step, "scripts": "[]", "host": HOST, "pid": os.getpid(),
                  "started_at": now, "updated_at": now}
        with write_tx(self.engine) as conn:
            if not unless_open:
                conn.execute(_INSERT_ROTATION, values)
                return True
            written = conn.execute(_INSERT_UNLESS_OPEN, {f"v_{k}": v for k, v in values.items()}).first()
            return written is not None

    def step(self, rotation_id: str, step: str, status: StepStatus, message: str = "", *, audit: AuditLike,
             record_uid: str, actor: str, details: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Journal one step (its audit entry, with `details` added) and update the rotation's columns in
        `fields` (`finish_columns` for an outcome), committed together."""
        with write_tx(self.engine) as conn:
            self.steps_on(conn, rotation_id, [(step, status, message, fields)], audit=audit,
                          record_uid=record_uid, actor=actor, last_details=details)

    def steps_on(self, conn: Connection, rotation_id: str, steps: Sequence[StepSpec], *, audit: AuditLike,
                 record_uid: str, actor: str, last_details: Mapping[str, Any] | None = None,
                 only_if: Bound | None = None, row: bool = True, then: Bound | None = None) -> bool:
        """Journal (step, status, message, fields) in order inside the caller's write transaction: their
        audit entries (`step_entries`) and one update of the rotation's columns (later fields win);
        `row=False` skips that update (the rotation row was just written with them:
        `start(last_step=...)`). `last_details`: more details for the last step's entry (an outcome).

        `only_if` (the account lock's `LockManager.held`) is checked by that update: False means it
        did not hold and nothing may be committed (the caller raises; its transaction rolls back).
        `then` (the lock's `LockManager.release_statement`) runs after that update (on PostgreSQL in
        the same statement)."""
        if not steps:
            return True
        merged: dict[str, Any] = {}
        for *_, fields in steps:
            merged.update(fields)
        if not row and (merged or only_if is not None):
            raise ValueError("steps_on(row=False) takes steps without fields and no fence")  # a bug
        entries = step_entries(rotation_id, record_uid, actor, steps, last_details)
        if row:
            values = {**self._encode(merged), "updated_at": _now(), "last_step": steps[-1][0]}
            update = _update_rotation(tuple(values), None if only_if is None else only_if.clause)
            params = {"k_id": rotation_id, **{f"v_{k}": v for k, v in values.items()},
                      **(only_if.params if only_if is not None else {})}
            done = self._with_append(conn, audit, update, params, entries, then)
            if done is not None:
                return done
            if conn.execute(update, params).rowcount != 1:
                return False
        if then is not None:
            conn.execute(then.clause, then.params)
        audit.append_many_on(conn, entries)
        return True

    def _with_append(self, conn: Connection, audit: AuditLike, update: sa.Update, params: Mapping[str, Any],
                     entries: Sequence[tuple[str, str, str | None, Mapping[str, Any] | None]],
                     then: Bound | None) -> bool | None:
        """PostgreSQL: the rotation row's UPDATE (and its fence) rides in the chain append's statement
        (`AuditLog.write_with`), with the entries the unit of work batched so far ahead of the steps', so
        chain order is unchanged; one statement instead of two. The unit's ORM changes are flushed first:
        the chain lock is taken after every record lock, as at the unit's end (`Storage.unit`). None:
        not possible here (SQLite, another log in the batch, no head row yet)."""
        from keyturn.audit.chain import AuditLog

        if conn.dialect.name != "postgresql" or not isinstance(audit, AuditLog):
            return None
        batch = ambient_audit_batch(self.engine)
        if batch is not None and any(log is not audit for log, _entry in batch):
            return None
        flush_ambient(self.engine)
        pending = [entry for _log, entry in batch] if batch is not None else []
        done = audit.write_with(conn, [*pending, *entries], _returning_id(update),
                                () if then is None else (then.clause,),
                                {**params, **(then.params if then is not None else {})})
        if done is not None and batch is not None:
            batch.clear()
        return done

    def update(self, rotation_id: str, **fields: Any) -> None:
        values = {**self._encode(fields), "updated_at": _now()}
        with write_tx(self.engine) as conn:
            conn.execute(rotations.update().where(rotations.c.id == rotation_id).values(**values))

    def finish(self, rotation_id: str, outcome: Outcome, reason: str) -> None:
        """Record the outcome; `unverified` / `needs_attention` keep the rotation open for recovery."""
        with write_tx(self.engine) as conn:
            self.finish_on(conn, rotation_id, outcome, reason)

    def finish_on(self, conn: Connection, rotation_id: str, outcome: Outcome, reason: str) -> None:
        conn.execute(rotations.update().where(rotations.c.id == rotation_id).values(
            **finish_columns(outcome, reason)))

    def get(self, rotation_id: str) -> RotationRow | None:
        with read_tx(self.engine) as conn:
            m = conn.execute(rotations.select().where(rotations.c.id == rotation_id)).mappings().first()
        return _row(m) if m else None

    def find_prefix(self, prefix: str) -> list[RotationRow]:
        """Rotations whose id starts with `prefix` (so users can type a short id)."""
        with read_tx(self.engine) as conn:
            ms = conn.execute(rotations.select().where(rotations.c.id.startswith(prefix)).limit(10))
            return [_row(m) for m in ms.mappings()]

    def steps(self, rotation_id: str) -> list[StepRow]:
        """The rotation's steps in the order they were journaled: `rotation_steps` rows (written before
        revision 0009), then its step audit entries."""
        from keyturn.audit.chain import is_step

        with read_tx(self.engine) as conn:
            legacy = conn.execute(_SELECT_LEGACY_STEPS, {"rid": rotation_id}).mappings().all()
            entries = conn.execute(_SELECT_STEP_ENTRIES, {"rid": rotation_id}).all()
        out = []
        for m in legacy:
            at = m["at"]
            assert at is not None
            out.append(StepRow(step=m["step"], status=StepStatus(m["status"]), message=m["message"], at=at,
                               worker=m["worker"]))
        for action, ts, text in entries:
            details = json.loads(text)
            if not is_step(action, details):
                continue
            out.append(StepRow(step=action.removeprefix("rotation."), status=StepStatus(details["status"]),
                               message=str(details["message"]), at=datetime.fromisoformat(ts),
                               worker=str(details["worker"])))
        return out

    def for_record(self, record_uid: str, *, limit: int = 50) -> list[RotationRow]:
        """Rotations of one record, newest first."""
        with read_tx(self.engine) as conn:
            ms = conn.execute(rotations.select().where(rotations.c.record_uid == record_uid)
                              .order_by(rotations.c.started_at.desc(), rotations.c.id).limit(limit))
            return [_row(m) for m in ms.mappings()]

    def open_rotations(self, record_uid: str | None = None) -> list[RotationRow]:
        """Rotations not in a final state (running, unverified, needs_attention), oldest first."""
        query = rotations.select().where(rotations.c.state.in_([s.value for s in OPEN_STATES]))
        if record_uid is not None:
            query = query.where(rotations.c.record_uid == record_uid)
        with read_tx(self.engine) as conn:
            return [_row(m) for m in conn.execute(query.order_by(rotations.c.started_at)).mappings()]

    @staticmethod
    def _encode(fields: dict[str, Any]) -> dict[str, Any]:
        out = dict(fields)
        if "scripts" in out:
            scripts: Sequence[ScriptSummary] = out["scripts"]
            out["scripts"] = json.dumps([s.to_json() for s in scripts])
        return out
