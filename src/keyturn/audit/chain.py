"""Keyed hash chain: the append-only audit log.

Each entry stores ``id, ts, actor, action, record_uid, details (JSON), prev_hash, hash`` where
``hash = HMAC-SHA256(chain key, canonical JSON of {id, ts, actor, action, record_uid, details,
prev_hash})`` and ``prev_hash`` is the previous entry's hash (64 zeros for the first). The chain key is
derived from the vault's integrity key (`Barrier.chain_mac`), which survives `vault rekey`; without it
nobody can rebuild the chain after deleting or editing entries, even with write access to the database.
The newest (id, hash) is also kept in the meta table (``audit_head``) with its own HMAC, updated in the
same transaction, so deleting the newest entries is detected too. `verify()` walks the chain and
returns the id of the first entry that was modified, deleted (the entry after the gap) or reordered,
or None when the chain is intact.

Vaults from before keyed chains hashed with plain SHA-256 (``mac=None`` here). Their first open by this
version re-keys the chain from genesis (`rekey_chain_on`), but only the prefix that still verifies
unkeyed: a chain already broken keeps reporting the same first bad entry. The vault audits the step.

Appends from many threads and processes stay linear: each append runs in a write transaction that
holds the chain lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL: the head row locked by the statement
that reads it, `Storage.lock_chain`) while it reads the head and writes the next entries. A unit of
work that batches its audit entries takes that lock only at its end, just before it commits.

`details` must never carry a secret value: `Secret` objects are refused; where equality matters,
store `Barrier.hmac_value(value)` instead.

Rotation steps are audit entries (`keyturn.engine.journal`): ``rotation.<step>`` with details carrying
``rotation_id``, ``status``, ``message`` and ``worker`` (the ``worker`` key marks an entry as a journal
step). The column ``rotation_id`` copies ``details.rotation_id`` so the journal finds a rotation's steps
by index; the hash does not cover the column but covers the details, and `verify` reports an entry whose
column differs from its details' value, or a step entry whose column was cleared (which would hide the
step from the journal), so the two cannot disagree unnoticed.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from keyturn.errors import AuditError
from keyturn.secret import Secret
from keyturn.vault.storage import AuditRow, MetaRow, Storage, ambient_audit_batch, connection_of, utcnow

GENESIS = "0" * 64
HEAD_KEY = "audit_head"
PAGE = 1000  # rows per keyset page when walking the chain

ChainMac = Callable[[bytes], str]  # bytes -> hex HMAC-SHA256 (`Barrier.chain_mac`)

# Prebuilt statements for the append hot path (built once, parameters bound per call).
_SELECT_HEAD = sa.select(MetaRow.value).where(MetaRow.key == HEAD_KEY)
_SELECT_MAX_ID = sa.select(sa.func.max(AuditRow.id))
_INSERT_ENTRY = sa.insert(AuditRow)
_INSERT_HEAD = sa.insert(MetaRow)
_UPDATE_HEAD = sa.update(MetaRow).where(MetaRow.key == HEAD_KEY).values(value=sa.bindparam("head_value"))
_MOVE_HEAD = sa.update(MetaRow).where(MetaRow.key == HEAD_KEY, MetaRow.value == sa.bindparam("expected")) \
    .values(value=sa.bindparam("head_value"))
_REHASH = sa.update(AuditRow).where(AuditRow.id == sa.bindparam("b_id")).values(
    prev_hash=sa.bindparam("b_prev"), hash=sa.bindparam("b_hash"))


_ENTRY_COLUMNS = ("id", "ts", "actor", "action", "record_uid", "details", "prev_hash", "hash", "rotation_id")


def rotation_of(details: Mapping[str, Any]) -> str | None:
    """The `rotation_id` column of an entry with these details: the rotation it names, if any."""
    rid = details.get("rotation_id")
    return rid if isinstance(rid, str) and rid else None


def is_step(action: str, details: Mapping[str, Any]) -> bool:
    """Whether an entry is a rotation journal step (``rotation.<step>`` written with a ``worker``)."""
    return action.startswith("rotation.") and "worker" in details and "status" in details


def column_ok(row: Any) -> bool:
    """Whether `row`'s unhashed `rotation_id` column agrees with its hashed details (`verify`)."""
    if row.rotation_id is None and '"worker"' not in row.details:
        return True   # the common case without parsing: no column, and certainly not a step entry
    details = json.loads(row.details)
    if not isinstance(details, dict):
        return row.rotation_id is None
    if row.rotation_id is None:
        return not is_step(row.action, details)
    return bool(row.rotation_id == rotation_of(details))


def _with_entries(statement: sa.Update, rows: int, prefix: str) -> sa.Update:
    """`statement` with `rows` single-row INSERTs of entries as data-modifying CTEs, parameters named
    ``<prefix><column>_<i>``. One INSERT per entry, not one multi-VALUES INSERT: SQLAlchemy cannot cache
    the compiled form of a multi-VALUES statement, so it would be compiled on every append, under the
    chain lock (measured: the larger part of the lock holder's CPU)."""
    for i in range(rows):
        entry: dict[str, Any] = {c: sa.bindparam(f"{prefix}{c}_{i}") for c in _ENTRY_COLUMNS}
        statement = statement.add_cte(sa.insert(AuditRow).values(entry).cte(f"kt_new_entry_{i}"))
    return statement


@functools.lru_cache(maxsize=16)
def _append_statement(rows: int) -> sa.Update:
    """PostgreSQL: `rows` entries and the head in one statement, built once per row count with named
    parameters (``id_0``, ``ts_0``, ...) so its compiled form is reused."""
    return _with_entries(_UPDATE_HEAD, rows, "")


@functools.lru_cache(maxsize=64)
def _append_with_statement(rows: int, update: sa.Update, also: tuple[sa.Delete, ...] = ()) -> sa.Update:
    """PostgreSQL: `_append_statement` with `update` (an UPDATE of another table, with RETURNING) and
    `also` as more data-modifying CTEs; the head moves only when `update` matched a row. Cached per
    (rows, update, also): callers pass statements built once with named parameters (the journal's),
    so it is built once per shape. Its own parameters are named ``kt_<column>_<i>``: the update's
    and the others' must not collide."""
    changed = update.cte("kt_changed")
    statement = _with_entries(
        _UPDATE_HEAD.where(sa.exists(sa.select(sa.literal(1)).select_from(changed))), rows, "kt_")
    for i, extra in enumerate(also):
        statement = statement.add_cte(extra.cte(f"kt_also_{i}"))
    return statement


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


def entry_hash(row: Any, mac: ChainMac | None = None, *, prev_hash: str | None = None) -> str:
    """The chain hash of `row` (an `AuditRow` or a Core row of its columns): keyed with `mac`, plain
    SHA-256 (pre-keyed vaults) without. `prev_hash` replaces the row's own (re-keying)."""
    return _hash_of(row.id, row.ts, row.actor, row.action, row.record_uid, row.details,
                    row.prev_hash if prev_hash is None else prev_hash, mac)


def _hash_of(
    entry_id: int, ts: str, actor: str, action: str, record_uid: str | None, details: str, prev_hash: str,
    mac: ChainMac | None,
) -> str:
    """`entry_hash` of the given column values (the append path builds no row object for it)."""
    body = {"id": entry_id, "ts": ts, "actor": actor, "action": action, "record_uid": record_uid,
            "details": details, "prev_hash": prev_hash}
    data = canonical(body).encode()
    return mac(data) if mac is not None else hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ChainRekey:
    """What `AuditLog.rekey_chain_on` did: entries re-keyed, the unkeyed head it replaced, and the first
    entry that already failed the unkeyed check (left as it was), if any."""

    rekeyed: int
    legacy_head: dict[str, Any] | None
    broken_at: int | None


def _to_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id, ts=datetime.fromisoformat(row.ts), actor=row.actor, action=row.action,
        record_uid=row.record_uid, details=json.loads(row.details), hash=row.hash,
    )


class AuditLog:
    """The audit chain over a `Storage`. Thread-safe (session per call)."""

    def __init__(self, storage: Storage, *, mac: ChainMac | None = None) -> None:
        """`mac` keys the chain (`Barrier.chain_mac`); None reads an unkeyed, pre-upgrade chain."""
        self._storage = storage
        self._mac = mac
        self._written: str | None = None   # the head value this log wrote last (SQLite's fast path)

    def _head_value(self, last_id: int, last_hash: str) -> str:
        head: dict[str, Any] = {"id": last_id, "hash": last_hash}
        if self._mac is not None:
            head["mac"] = self._head_mac(last_id, last_hash)
        return json.dumps(head)

    def _head_mac(self, last_id: int, last_hash: str) -> str:
        assert self._mac is not None
        return self._mac(canonical(["keyturn-audit-head-v1", last_id, last_hash]).encode())

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
        s.flush()   # the session's pending changes first: the chain lock comes last (see `Storage.unit`)
        return self.append_on(connection_of(s), action, actor=actor, record_uid=record_uid, details=details)

    def append_on(
        self, conn: sa.Connection, action: str, *, actor: str, record_uid: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append on the caller's connection, inside its write transaction (see `append_many_on`);
        0 inside a batching unit of work (the id is assigned when the unit writes its batch)."""
        ids = self.append_many_on(conn, [(action, actor, record_uid, details)])
        return ids[0] if ids else 0

    def append_many_on(
        self, conn: sa.Connection,
        entries: Sequence[tuple[str, str, str | None, Mapping[str, Any] | None]],
    ) -> builtins.list[int]:
        """Append (action, actor, record_uid, details) entries in order, on the caller's connection
        inside its write transaction; returns their ids.

        Prebuilt Core statements, not the ORM: appends sit on the rotation hot path (one per step).
        The head is read once and written once however many entries go in; ids are the head's id + 1,
        + 2, ..., chosen under the chain lock, so each hash (which covers the id) is known before the
        insert. Inside a batching unit of work (`Storage.unit(batch_audit=True)`) the entries join the
        unit's batch, written with the unit's others just before it commits: no ids are returned.
        """
        if not entries:
            return []
        batch = ambient_audit_batch(self._storage.engine)
        if batch is not None:
            batch.extend((self, entry) for entry in entries)
            return []
        return self.write_batch(conn, entries)

    def write_batch(
        self, conn: sa.Connection,
        entries: Sequence[tuple[str, str, str | None, Mapping[str, Any] | None]],
    ) -> builtins.list[int]:
        """Write entries into the chain now (see `append_many_on`); returns their ids."""
        if not entries:
            return []
        prepared = self._prepare(entries)   # before the chain lock (see `write_with`)
        guess = self._written if self._storage.dialect == "sqlite" else None
        if guess is not None:
            # SQLite: the transaction holds the writer lock already, and the head this process wrote
            # last is still the head unless another process appended since; a conditional UPDATE
            # checks that and moves the head in one statement, so no head read (else: read it).
            params, value = self._chain(guess, prepared)
            if conn.execute(_MOVE_HEAD, {"head_value": value, "expected": guess}).rowcount == 1:
                conn.execute(_INSERT_ENTRY, params)
                self._written = value   # a rollback leaves it stale: the next check fails, reads
                return [p["id"] for p in params]
        head = self._storage.lock_chain(conn)   # the chain lock and the head, in one statement
        if head is None:  # first entry (or a chain whose head was removed: continue after the newest row)
            start = json.dumps({"id": int(conn.execute(_SELECT_MAX_ID).scalar_one() or 0), "hash": GENESIS})
        params, value = self._chain(head if head is not None else start, prepared)
        self._written = value
        ids = [p["id"] for p in params]
        if head is not None and self._storage.dialect == "postgresql":
            # Entries and head in one statement (a data-modifying CTE): one round trip less while the
            # chain lock is held, and every writer of the installation waits for that lock.
            flat = {f"{k}_{i}": v for i, row in enumerate(params) for k, v in row.items()}
            conn.execute(_append_statement(len(params)), {"head_value": value, **flat})
            return ids
        conn.execute(_INSERT_ENTRY, params)
        if head is not None:
            conn.execute(_UPDATE_HEAD, {"head_value": value})
        else:
            conn.execute(_INSERT_HEAD, {"key": HEAD_KEY, "value": value})
        return ids

    def write_with(
        self, conn: sa.Connection,
        entries: Sequence[tuple[str, str, str | None, Mapping[str, Any] | None]], update: sa.Update,
        also: Sequence[sa.Delete] = (), params: Mapping[str, Any] | None = None,
    ) -> bool | None:
        """PostgreSQL, inside the caller's write transaction: run `update` (an UPDATE with RETURNING of
        another table, e.g. the rotation row with its fence) and `also` (e.g. the account lock's
        release; every part sees the rows as they were before the statement) and write `entries` into
        the chain in one statement, the chain lock taken first (`lock_chain`). True: done. False:
        `update` matched no row; the head did not move but the entries were inserted (and `also` ran),
        so the caller must roll back. None: not done here (not PostgreSQL, no entries, or no head row
        yet): run `update` and `also`, then append. `params`: the values of `update`'s and `also`'s
        named parameters."""
        if self._storage.dialect != "postgresql" or not entries:
            return None
        # Everything that does not need the head is done before the chain lock, which every writer of
        # the installation waits for: the statement and its cache key (SQLAlchemy would generate the key
        # at execute; it is memoized on the statement), and the entries' serialised details.
        statement = _append_with_statement(len(entries), update, tuple(also))
        statement._generate_cache_key()
        prepared = self._prepare(entries)
        head = self._storage.lock_chain(conn)
        if head is None:
            return None
        rows, value = self._chain(head, prepared)
        flat = {f"kt_{k}_{i}": v for i, row in enumerate(rows) for k, v in row.items()}
        moved = conn.execute(statement, {**(params or {}), "head_value": value, **flat})
        if moved.rowcount != 1:
            return False
        self._written = value
        return True

    @staticmethod
    def _prepare(
        entries: Sequence[tuple[str, str, str | None, Mapping[str, Any] | None]],
    ) -> builtins.list[dict[str, Any]]:
        """The rows of `entries` without id, hash and link: what can be computed before the chain lock
        (the details serialised, a secret refused, the `rotation_id` column)."""
        return [{"actor": actor, "action": action, "record_uid": record_uid,
                 "details": canonical(dict(details or {})), "rotation_id": rotation_of(details or {})}
                for action, actor, record_uid, details in entries]

    def _chain(
        self, head: str, rows: builtins.list[dict[str, Any]],
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """`rows` (from `_prepare`, completed in place) chained after the stored head value `head`; the
        new head value. Each row's timestamp is taken here, under the chain lock, so ids and times agree."""
        last = json.loads(head)
        prev, last_id = str(last["hash"]), int(last["id"])
        for row in rows:
            last_id += 1
            ts = utcnow().isoformat(timespec="microseconds")
            row["id"], row["ts"], row["prev_hash"] = last_id, ts, prev
            row["hash"] = prev = _hash_of(last_id, ts, row["actor"], row["action"], row["record_uid"],
                                          row["details"], row["prev_hash"], self._mac)
        return rows, self._head_value(last_id, prev)

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

    def head(self) -> tuple[int, str] | None:
        """(id, hash) of the newest entry, or None when the log is empty."""
        with self._storage.session() as s:
            q = sa.select(AuditRow.id, AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)
            row = s.execute(q).first()
        return (int(row.id), str(row.hash)) if row is not None else None

    def verify(self) -> int | None:
        """Id of the first broken entry (modified, deleted, reordered), or None if the chain holds."""
        prev, last_id = GENESIS, 0
        with self._storage.session() as s:
            while True:  # keyset pages: bounded memory, no server-side cursor left open on early return
                page = list(s.scalars(
                    sa.select(AuditRow).where(AuditRow.id > last_id).order_by(AuditRow.id).limit(PAGE)
                ))
                for row in page:
                    if row.prev_hash != prev or not hmac.compare_digest(entry_hash(row, self._mac), row.hash):
                        return row.id
                    if not column_ok(row):   # the journal's index of steps disagrees with the entry
                        return row.id
                    prev, last_id = row.hash, row.id
                s.expunge_all()
                if len(page) < PAGE:
                    break
            head = s.get(MetaRow, HEAD_KEY)
        if head is None:
            if last_id == 0:
                # A keyed chain is never empty (`vault.init` is its first entry): all of it was deleted.
                return 1 if self._mac is not None else None
            return last_id
        want = json.loads(head.value)
        head_ok = self._mac is None or hmac.compare_digest(
            str(want.get("mac", "")), self._head_mac(int(want["id"]), str(want["hash"])))
        if (want["id"], want["hash"]) != (last_id, prev) or not head_ok:
            # The newest entries were deleted (or the head itself was altered).
            return int(want["id"]) if want["id"] > last_id else last_id
        return None

    def rekey_chain_on(self, conn: sa.Connection) -> ChainRekey:
        """Re-hash an unkeyed (pre-upgrade) chain with this log's key, in the caller's write transaction.

        Only the prefix that still verifies unkeyed is re-keyed; from the first entry that does not,
        entries stay as they are, so `verify` keeps naming it (a chain broken before the upgrade is not
        laundered by it). The head is re-keyed when the whole chain verified.
        """
        assert self._mac is not None, "rekey_chain_on needs a keyed log"
        self._storage.serialize(conn)
        legacy_prev, keyed_prev, last_id, count = GENESIS, GENESIS, 0, 0
        broken: int | None = None
        cols = (AuditRow.id, AuditRow.ts, AuditRow.actor, AuditRow.action, AuditRow.record_uid,
                AuditRow.details, AuditRow.prev_hash, AuditRow.hash)
        while broken is None:
            page = conn.execute(sa.select(*cols).where(AuditRow.id > last_id).order_by(AuditRow.id)
                                .limit(PAGE)).all()
            updates = []
            for row in page:
                if row.prev_hash != legacy_prev or entry_hash(row) != row.hash:
                    broken = row.id
                    break
                new_hash = entry_hash(row, self._mac, prev_hash=keyed_prev)
                updates.append({"b_id": row.id, "b_prev": keyed_prev, "b_hash": new_hash})
                legacy_prev, keyed_prev, last_id = row.hash, new_hash, row.id
            if updates:
                conn.execute(_REHASH, updates)
                count += len(updates)
            if len(page) < PAGE:
                break
        raw = conn.execute(_SELECT_HEAD).scalar_one_or_none()
        legacy_head = json.loads(raw) if raw is not None else None
        if broken is None and last_id and legacy_head is None:
            broken = last_id  # entries but no head: the unkeyed `verify` named the newest one too
        elif broken is None and legacy_head is not None and (legacy_head["id"], legacy_head["hash"]) != (
                last_id, legacy_prev):
            broken = int(legacy_head["id"]) if legacy_head["id"] > last_id else last_id
        if broken is None and last_id:
            value = self._head_value(last_id, keyed_prev)
            if raw is not None:
                conn.execute(_UPDATE_HEAD, {"head_value": value})
            else:
                conn.execute(_INSERT_HEAD, {"key": HEAD_KEY, "value": value})
        return ChainRekey(rekeyed=count, legacy_head=legacy_head, broken_at=broken)
