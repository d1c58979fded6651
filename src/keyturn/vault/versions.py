"""Secret versions: every value of a secret field is a numbered, encrypted version with a state.

States: ``pending`` (write-ahead candidate) → ``current`` → ``previous``; or ``pending`` → ``failed``.
Exactly one ``current`` per (record, field), enforced by a partial unique index; `promote` demotes
the old current and promotes the new one in one transaction. History beyond the configured depth
is trimmed oldest-first among ``previous``/``failed``; ``pending`` and ``current`` are never trimmed.

The functions here run inside a caller's write session (see `Vault`); they never commit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from keyturn.errors import VaultError
from keyturn.vault.storage import SecretVersionRow, connection_of, utcnow


class VersionState(enum.StrEnum):
    PENDING = "pending"
    CURRENT = "current"
    PREVIOUS = "previous"
    FAILED = "failed"


@dataclass(frozen=True)
class VersionInfo:
    """One version's metadata (never its value)."""

    version: int
    state: VersionState
    field: str
    rotation_id: str | None
    created_at: datetime
    updated_at: datetime
    #: keyed digest of (secret, stored-hash text the device showed when keyturn proved it); see
    #: `keyturn.targets.iosxe_verify.StoredHashMemo`
    device_seen: str | None = None


# Core statements (no ORM entities): versions are read and written on every rotation's hot path.
_T: sa.Table = SecretVersionRow.__table__  # type: ignore[assignment]
_SELECT_CURRENT = sa.select(_T.c.field, _T.c.version, _T.c.ciphertext).where(
    _T.c.record_uid == sa.bindparam("uid"), _T.c.state == "current")

# Writes of the hot path, built once with named parameters (building a statement per call cost more CPU
# than running it on SQLite). Parameters are prefixed ``k_`` so they cannot collide with the column
# names SQLAlchemy binds for SET.
_INSERT = sa.insert(_T)
_DEMOTE = (sa.update(_T)
           .where(_T.c.record_uid == sa.bindparam("k_uid"), _T.c.field == sa.bindparam("k_field"),
                  _T.c.state == VersionState.CURRENT.value)
           .values(state=VersionState.PREVIOUS.value, updated_at=sa.bindparam("k_now"))
           .returning(_T.c.version))
_PROMOTE = (sa.update(_T)
            .where(_T.c.record_uid == sa.bindparam("k_uid"), _T.c.field == sa.bindparam("k_field"),
                   _T.c.version == sa.bindparam("k_version"))
            .values(state=VersionState.CURRENT.value, updated_at=sa.bindparam("k_now")))
_PROMOTE_SEEN = _PROMOTE.values(device_seen=sa.bindparam("k_seen"))
_TRIM = sa.delete(_T).where(_T.c.id.in_(
    sa.select(_T.c.id)
    .where(_T.c.record_uid == sa.bindparam("k_uid"), _T.c.field == sa.bindparam("k_field"),
           _T.c.state.in_([VersionState.PREVIOUS.value, VersionState.FAILED.value]))
    .order_by(_T.c.version.desc())
    .offset(sa.bindparam("k_depth", type_=sa.Integer))))


class CachedVersion(NamedTuple):
    """A kt_secret_versions row read by a `joined` query (the columns in table order)."""

    id: int
    record_uid: str
    field: str
    version: int
    state: str
    rotation_id: str | None
    ciphertext: bytes
    created_at: datetime
    updated_at: datetime
    device_seen: str | None


VersionRow = sa.Row[Any] | CachedVersion   # a kt_secret_versions row: .field .version .state .ciphertext ...


def info(row: VersionRow) -> VersionInfo:
    return VersionInfo(
        version=row.version, state=VersionState(row.state), field=row.field, rotation_id=row.rotation_id,
        created_at=row.created_at, updated_at=row.updated_at, device_seen=row.device_seen,
    )


def next_version(s: Session, uid: str, slot: str) -> int:
    top = connection_of(s).scalar(
        sa.select(sa.func.max(_T.c.version)).where(_T.c.record_uid == uid, _T.c.field == slot))
    return int(top or 0) + 1


def get_row(s: Session, uid: str, slot: str, version: int) -> VersionRow:
    cached = s.info.get(CURRENT_CACHE, {}).get(uid)
    row = (next((r for r in cached if r.field == slot and r.version == version), None)
           if cached is not None else connection_of(s).execute(sa.select(_T).where(
               _T.c.record_uid == uid, _T.c.field == slot, _T.c.version == version)).first())
    if row is None:
        raise VaultError(f"record {uid} field {slot!r} has no version {version}")
    return row


def current_row(s: Session, uid: str, slot: str) -> VersionRow | None:
    cached = s.info.get(CURRENT_CACHE, {}).get(uid)
    if cached is not None:   # this unit read them (`_cached`, `remember`); writes drop the entry
        return next((r for r in cached if r.field == slot and r.state == VersionState.CURRENT.value), None)
    return connection_of(s).execute(sa.select(_T).where(
        _T.c.record_uid == uid, _T.c.field == slot, _T.c.state == VersionState.CURRENT.value)).first()


#: Session.info key of the per-unit cache of a record's versions: uid → every version row of the
#: record (`Storage.unit` creates it; every write of a record's versions below drops that record's entry).
CURRENT_CACHE = "kt_current_values"
_SELECT_ALL = sa.select(_T).where(_T.c.record_uid == sa.bindparam("uid"))
#: The columns a query that reads records joins in to fill the cache with their versions (`remember`).
COLUMNS: tuple[sa.Column[Any], ...] = tuple(_T.c)


def _cached(s: Session, uid: str) -> list[VersionRow] | None:
    """Every version row of `uid`, read once per unit of work (None outside a unit: no cache)."""
    cache: dict[str, list[VersionRow]] | None = s.info.get(CURRENT_CACHE)
    if cache is None:
        return None
    if uid not in cache:
        # One query for the current secrets and the version list a rotation reads in the same unit.
        cache[uid] = list(connection_of(s).execute(_SELECT_ALL, {"uid": uid}))
    return cache[uid]


def joined(records: sa.Select[Any], uid: Any) -> sa.Select[Any]:
    """`records` (a SELECT of kt_records rows, `uid` their uid column) with every version of each
    record joined in (``LEFT OUTER JOIN``: a record without versions comes back once, with NULL
    version columns); its rows go to `remember`."""
    return records.add_columns(*COLUMNS).outerjoin(_T, _T.c.record_uid == uid)


def remember(s: Session, uid: str, rows: list[sa.Row[Any]]) -> None:
    """Inside a unit of work: `rows` (of a `joined` query, all of record `uid`'s) are its versions;
    later reads of them in the unit send no query. A record already cached keeps its entry (this
    unit may have written versions since); outside a unit: nothing."""
    cache: dict[str, list[VersionRow]] | None = s.info.get(CURRENT_CACHE)
    if cache is None or uid in cache:
        return
    # `joined` adds the version columns last, in `COLUMNS` order: sliced by position (a mapping
    # lookup per column cost more than the query's other Python work).
    width = len(COLUMNS)
    cache[uid] = [CachedVersion(*r[-width:]) for r in rows if r[-width] is not None]


def current_values(s: Session, uid: str) -> dict[str, tuple[int, bytes]]:
    """slot → (version, ciphertext) of every current version of a record, in one query (inside a unit
    of work once per unit, with the version list: a rotation reads the same record's secret and its
    versions several times in one transaction)."""
    rows = _cached(s, uid)
    if rows is None:
        return {f: (v, c) for f, v, c in connection_of(s).execute(_SELECT_CURRENT, {"uid": uid})}
    return {r.field: (r.version, r.ciphertext) for r in rows if r.state == VersionState.CURRENT.value}


def forget_current(s: Session, uid: str) -> None:
    cache = s.info.get(CURRENT_CACHE)
    if cache is not None:
        cache.pop(uid, None)


def list_rows(s: Session, uid: str, slot: str) -> list[VersionRow]:
    """Newest first."""
    rows = _cached(s, uid)
    if rows is not None:
        return sorted((r for r in rows if r.field == slot), key=lambda r: r.version, reverse=True)
    return list(connection_of(s).execute(sa.select(_T).where(_T.c.record_uid == uid, _T.c.field == slot)
                          .order_by(_T.c.version.desc())))


def insert(
    s: Session, uid: str, slot: str, version: int, ciphertext: bytes, state: VersionState,
    rotation_id: str | None,
) -> None:
    now = utcnow()
    forget_current(s, uid)
    connection_of(s).execute(_INSERT, {"record_uid": uid, "field": slot, "version": version,
                        "state": VersionState.PENDING.value, "rotation_id": rotation_id,
                        "ciphertext": ciphertext, "created_at": now, "updated_at": now})
    if state is not VersionState.PENDING:
        set_state(s, uid, slot, version, state)


def set_state(s: Session, uid: str, slot: str, version: int, state: VersionState) -> str:
    """Move a version to `state`; returns its state before. To `current`: the old current becomes
    `previous` first (same transaction)."""
    row = get_row(s, uid, slot, version)
    if row.state == state.value:
        return str(row.state)
    if row.state == VersionState.CURRENT.value:
        raise VaultError(f"version {version} of {slot!r} is current; promote another version instead")
    now = utcnow()
    forget_current(s, uid)
    if state is VersionState.CURRENT:
        # Demote before promote: the partial unique index allows one current at a time.
        connection_of(s).execute(sa.update(_T).where(_T.c.record_uid == uid, _T.c.field == slot,
                                      _T.c.state == VersionState.CURRENT.value)
                  .values(state=VersionState.PREVIOUS.value, updated_at=now))
    connection_of(s).execute(
        sa.update(_T).where(_T.c.record_uid == uid, _T.c.field == slot, _T.c.version == version)
        .values(state=state.value, updated_at=now))
    return str(row.state)


def promote(s: Session, uid: str, slot: str, version: int, *, seen: str | None = None) -> int | None:
    """`version` → current, the old current → `previous` (same transaction); returns the old current's
    number (None: there was none). Two statements, no read: the demote says what it demoted, and the
    promote matches only a version that exists (else `VaultError`; the caller's transaction rolls the
    demote back with it). `seen`: the version's `device_seen`, written by the same UPDATE."""
    now = utcnow()
    forget_current(s, uid)
    # Demote before promote: the partial unique index allows one current at a time.
    where = {"k_uid": uid, "k_field": slot}
    old = connection_of(s).execute(_DEMOTE, {**where, "k_now": now}).scalar_one_or_none()
    res = connection_of(s).execute(_PROMOTE if seen is None else _PROMOTE_SEEN,
                    {**where, "k_version": version, "k_now": now, "k_seen": seen})
    if res.rowcount != 1:
        raise VaultError(f"record {uid} field {slot!r} has no version {version}")
    return None if old is None else int(old)


def trim(s: Session, uid: str, slot: str, depth: int) -> int:
    """Delete the oldest `previous`/`failed` versions beyond `depth` (one statement); returns how many."""
    forget_current(s, uid)
    res = connection_of(s).execute(_TRIM, {"k_uid": uid, "k_field": slot, "k_depth": depth})
    return int(res.rowcount)
