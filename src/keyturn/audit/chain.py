"""Hash-chained, append-only audit log.

Each entry stores ``id, ts, actor, action, record_uid, details (JSON), prev_hash, hash`` where
``hash = SHA-256(canonical JSON of {id, ts, actor, action, record_uid, details, prev_hash})`` and
``prev_hash`` is the previous entry's hash (64 zeros for the first). The newest (id, hash) is also
kept in the meta table (``audit_head``), updated in the same transaction, so deleting the newest
entries is detected too. `verify()` walks the chain and returns the id of the first entry that was
modified, deleted (the entry after the gap) or reordered, or None when the chain is intact.

Appends from many threads and processes stay linear: each append runs in a write transaction that
holds the chain lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL advisory transaction lock) while it
reads the head and writes the next entry.

`details` must never carry a secret value: `Secret` objects are refused; where equality matters,
store `Barrier.hmac_value(value)` instead.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from keyturn.errors import AuditError
from keyturn.secret import Secret
from keyturn.vault.storage import AuditRow, MetaRow, Storage, utcnow

GENESIS = "0" * 64
HEAD_KEY = "audit_head"

# Prebuilt statements for the append hot path (built once, parameters bound per call).
_SELECT_HEAD = sa.select(MetaRow.value).where(MetaRow.key == HEAD_KEY)
_SELECT_MAX_ID = sa.select(sa.func.max(AuditRow.id))
_INSERT_ENTRY = sa.insert(AuditRow)
_INSERT_HEAD = sa.insert(MetaRow)
_UPDATE_HEAD = sa.update(MetaRow).where(MetaRow.key == HEAD_KEY).values(value=sa.bindparam("head_value"))


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: datetime
    actor: str
    action: str
    record_uid: str | None
    details: dict[str, Any]
    hash: str


def _refuse_secret(obj: Any) -> Any:
    if isinstance(obj, Secret):
        raise AuditError("audit details must not contain a secret value (store an HMAC instead)")
    if isinstance(obj, datetime):
        return obj.isoformat()
    raise AuditError(f"audit details must be JSON values, not {type(obj).__name__}")


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_refuse_secret)


def entry_hash(row: AuditRow) -> str:
    body = {
        "id": row.id, "ts": row.ts, "actor": row.actor, "action": row.action,
        "record_uid": row.record_uid, "details": row.details, "prev_hash": row.prev_hash,
    }
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def _to_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id, ts=datetime.fromisoformat(row.ts), actor=row.actor, action=row.action,
        record_uid=row.record_uid, details=json.loads(row.details), hash=row.hash,
    )


class AuditLog:
    """The audit chain over a `Storage`. Thread-safe (session per call)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def append(
        self, action: str, *, actor: str, record_uid: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one entry (committed on return); returns its id."""
        with self._storage.session(write=True) as s:
            return self.append_in(s, action, actor=actor, record_uid=record_uid, details=details)

    def append_in(
        self, s: Session, action: str, *, actor: str, record_uid: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append inside the caller's write session (so a change and its audit entry commit together)."""
        return self.append_on(s.connection(), action, actor=actor, record_uid=record_uid, details=details)

    def append_on(
        self, conn: sa.Connection, action: str, *, actor: str, record_uid: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append on the caller's connection, inside its write transaction (see `append_many_on`)."""
        return self.append_many_on(conn, [(action, actor, record_uid, details)])[0]

    def append_many_on(
        self, conn: sa.Connection,
        entries: Sequence[tuple[str, str, str | None, Mapping[str, Any] | None]],
    ) -> builtins.list[int]:
        """Append (action, actor, record_uid, details) entries in order, on the caller's connection
        inside its write transaction; returns their ids.

        Prebuilt Core statements, not the ORM: appends sit on the rotation hot path (one per step).
        The head is read once and written once however many entries go in; ids are the head's id + 1,
        + 2, ..., chosen under the chain lock, so each hash (which covers the id) is known before the
        insert.
        """
        if not entries:
            return []
        self._storage.serialize(conn)
        head = conn.execute(_SELECT_HEAD).scalar_one_or_none()
        if head is not None:
            last = json.loads(head)
            prev, last_id = last["hash"], int(last["id"])
        else:  # first entry (or a chain whose head was removed: continue after the newest row)
            prev, last_id = GENESIS, int(conn.execute(_SELECT_MAX_ID).scalar_one() or 0)
        params = []
        for action, actor, record_uid, details in entries:
            text = canonical(dict(details or {}))
            last_id += 1
            row = AuditRow(id=last_id, ts=utcnow().isoformat(timespec="microseconds"), actor=actor,
                           action=action, record_uid=record_uid, details=text, prev_hash=prev)
            row.hash = prev = entry_hash(row)
            params.append({"id": row.id, "ts": row.ts, "actor": actor, "action": action,
                           "record_uid": record_uid, "details": text, "prev_hash": row.prev_hash,
                           "hash": row.hash})
        conn.execute(_INSERT_ENTRY, params)
        value = json.dumps({"id": last_id, "hash": prev})
        if head is not None:
            conn.execute(_UPDATE_HEAD, {"head_value": value})
        else:
            conn.execute(_INSERT_HEAD, {"key": HEAD_KEY, "value": value})
        return list(range(last_id - len(params) + 1, last_id + 1))

    def list(
        self, *, record_uid: str | None = None, action: str | None = None, limit: int | None = None,
    ) -> builtins.list[AuditEntry]:
        """Entries, newest first, optionally for one record / action, at most `limit`."""
        q = sa.select(AuditRow).order_by(AuditRow.id.desc())
        if record_uid is not None:
            q = q.where(AuditRow.record_uid == record_uid)
        if action is not None:
            q = q.where(AuditRow.action == action)
        if limit is not None:
            q = q.limit(limit)
        with self._storage.session() as s:
            return [_to_entry(r) for r in s.scalars(q)]

    def verify(self) -> int | None:
        """Id of the first broken entry (modified, deleted, reordered), or None if the chain holds."""
        prev, last_id = GENESIS, 0
        with self._storage.session() as s:
            while True:  # keyset pages: bounded memory, no server-side cursor left open on early return
                page = list(s.scalars(
                    sa.select(AuditRow).where(AuditRow.id > last_id).order_by(AuditRow.id).limit(1000)
                ))
                for row in page:
                    if row.prev_hash != prev or entry_hash(row) != row.hash:
                        return row.id
                    prev, last_id = row.hash, row.id
                s.expunge_all()
                if len(page) < 1000:
                    break
            head = s.get(MetaRow, HEAD_KEY)
        if head is None:
            return None if last_id == 0 else last_id
        want = json.loads(head.value)
        if (want["id"], want["hash"]) != (last_id, prev):
            # The newest entries were deleted (or the head itself was altered).
            return int(want["id"]) if want["id"] > last_id else last_id
        return None
