"""Durable per-record schedule state: table `kt_schedule_state` (Alembic revision `0003_schedules`).

One row per scheduled record. What makes the scheduler restart-safe:

* `slot` is the schedule slot being served and only moves forward, so a wall-clock step backwards
  never makes an already served slot due again.
* Before a rotation starts, `dispatched_at` is set together with `rotations_seen` (how many journal
  rotations the record had then) in one transaction. After a crash, a larger journal count means the
  rotation did start (recovery settles it; its outcome counts for the slot); an equal count means it
  never started, so the same slot is dispatched again. Neither lost nor doubled.
* `attempts` / `needs_attention` carry the failure back-off across restarts.

No secret is ever stored here. Times are aware UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from keyturn.engine.journal import read_tx, rotations, write_tx
from keyturn.vault.storage import RecordRow, UTCDateTime

metadata = sa.MetaData()

schedule_state = sa.Table(
    "kt_schedule_state", metadata,
    sa.Column("record_uid", sa.String(32), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, server_default=""),
    sa.Column("slot", UTCDateTime, nullable=True),
    sa.Column("next_due", UTCDateTime, nullable=True, index=True),
    sa.Column("deferred", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("needs_attention", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("attention_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("dispatched_at", UTCDateTime, nullable=True),
    sa.Column("rotations_seen", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_run_at", UTCDateTime, nullable=True),
    sa.Column("last_outcome", sa.String(32), nullable=True),
    sa.Column("last_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("last_rotation_id", sa.String(64), nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)


@dataclass(slots=True)
class ScheduleState:
    """One record's schedule state (mutable; the scheduler owns the live copy, saves after changes)."""

    record_uid: str
    fingerprint: str = ""
    slot: datetime | None = None
    next_due: datetime | None = None
    deferred: bool = False
    attempts: int = 0
    needs_attention: bool = False
    attention_reason: str = ""
    dispatched_at: datetime | None = None
    rotations_seen: int = 0
    last_run_at: datetime | None = None
    last_outcome: str | None = None
    last_reason: str = ""
    last_rotation_id: str | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def values(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class JournalProbe:
    """What the rotation journal says about a record: how many rotations, and the newest one."""

    count: int
    latest_id: str | None
    latest_outcome: str | None
    latest_state: str | None
    latest_reason: str


@dataclass(frozen=True, slots=True)
class ScheduledRecord:
    uid: str
    title: str
    meta: dict[str, object]


class StateStore:
    """Reads and writes `kt_schedule_state` (and reads the journal / record meta) on the vault engine.

    Synchronous; every method is one transaction, committed before it returns.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        """Create the table directly (tests on a bare engine; the vault uses Alembic)."""
        metadata.create_all(self.engine)

    def load_all(self) -> dict[str, ScheduleState]:
        with read_tx(self.engine) as conn:
            return {m["record_uid"]: ScheduleState(**m) for m in
                    conn.execute(schedule_state.select()).mappings()}

    def get(self, uid: str) -> ScheduleState | None:
        with read_tx(self.engine) as conn:
            q = schedule_state.select().where(schedule_state.c.record_uid == uid)
            m = conn.execute(q).mappings().first()
        return ScheduleState(**m) if m else None

    def save(self, states: Iterable[ScheduleState], delete: Iterable[str] = ()) -> None:
        """Upsert `states` and delete rows of `delete`, in one transaction."""
        self.transact([lambda conn: save_in(conn, states, delete)])

    def mark_dispatched(self, st: ScheduleState, at: datetime) -> None:
        """Set the in-flight marker (with the journal count *now*) durably, before the rotation starts."""
        self.transact([lambda conn: mark_in(conn, st, at)])

    def transact(self, ops: Sequence[Callable[[sa.Connection], None]]) -> None:
        """Run `ops` (`save_in` / `mark_in` partials) in one write transaction: all or none."""
        with write_tx(self.engine) as conn:
            for op in ops:
                op(conn)

    def probe(self, uid: str) -> JournalProbe:
        with read_tx(self.engine) as conn:
            count = _count(conn, uid)
            m = conn.execute(sa.select(rotations.c.id, rotations.c.outcome, rotations.c.state,
                                       rotations.c.reason)
                             .where(rotations.c.record_uid == uid)
                             .order_by(rotations.c.started_at.desc(), rotations.c.id.desc()).limit(1)).first()
        if m is None:
            return JournalProbe(count, None, None, None, "")
        return JournalProbe(count, m.id, m.outcome, m.state, m.reason or "")

    def scheduled_records(self, meta_key: str) -> list[ScheduledRecord]:
        """Records whose meta has `meta_key` (plain JSON; nothing is decrypted)."""
        q = sa.select(RecordRow.uid, RecordRow.title, RecordRow.meta_json).where(
            RecordRow.meta_json.contains(f'"{meta_key}"', autoescape=True))
        with read_tx(self.engine) as conn:
            rows = conn.execute(q).all()
        out = []
        for uid, title, meta_json in rows:
            meta = json.loads(meta_json)
            if isinstance(meta, dict) and meta.get(meta_key) is not None:
                out.append(ScheduledRecord(uid=uid, title=title, meta=meta))
        return out

    def clear_attention(self, uid: str) -> bool:
        """Clear a record's needs-attention flag (a person fixed it); True when it was set."""
        with write_tx(self.engine) as conn:
            done = conn.execute(schedule_state.update()
                                .where(schedule_state.c.record_uid == uid, schedule_state.c.needs_attention)
                                .values(needs_attention=False, attention_reason="", attempts=0,
                                        next_due=None, updated_at=datetime.now(UTC)))
        return bool(done.rowcount)


def save_in(conn: sa.Connection, states: Iterable[ScheduleState], delete: Iterable[str] = ()) -> None:
    now = datetime.now(UTC)
    for st in states:
        st.updated_at = now
        values = st.values()
        done = conn.execute(schedule_state.update()
                            .where(schedule_state.c.record_uid == st.record_uid).values(**values))
        if done.rowcount == 0:
            conn.execute(schedule_state.insert().values(**values))
    gone = list(delete)
    if gone:
        conn.execute(schedule_state.delete().where(schedule_state.c.record_uid.in_(gone)))


def mark_in(conn: sa.Connection, st: ScheduleState, at: datetime) -> None:
    st.rotations_seen = _count(conn, st.record_uid)
    st.dispatched_at = at
    st.updated_at = datetime.now(UTC)
    conn.execute(schedule_state.update().where(schedule_state.c.record_uid == st.record_uid)
                 .values(dispatched_at=at, rotations_seen=st.rotations_seen, updated_at=st.updated_at))


def _count(conn: sa.Connection, uid: str) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(rotations)
                            .where(rotations.c.record_uid == uid)).scalar_one())
