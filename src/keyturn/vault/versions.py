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

import sqlalchemy as sa
from sqlalchemy.orm import Session

from keyturn.errors import VaultError
from keyturn.vault.storage import SecretVersionRow, utcnow


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


def info(row: SecretVersionRow) -> VersionInfo:
    return VersionInfo(
        version=row.version, state=VersionState(row.state), field=row.field, rotation_id=row.rotation_id,
        created_at=row.created_at, updated_at=row.updated_at,
    )


def next_version(s: Session, uid: str, slot: str) -> int:
    top = s.scalar(
        sa.select(sa.func.max(SecretVersionRow.version)).where(
            SecretVersionRow.record_uid == uid, SecretVersionRow.field == slot
        )
    )
    return (top or 0) + 1


def get_row(s: Session, uid: str, slot: str, version: int) -> SecretVersionRow:
    row = s.scalar(
        sa.select(SecretVersionRow).where(
            SecretVersionRow.record_uid == uid, SecretVersionRow.field == slot,
            SecretVersionRow.version == version,
        )
    )
    if row is None:
        raise VaultError(f"record {uid} field {slot!r} has no version {version}")
    return row


def current_row(s: Session, uid: str, slot: str) -> SecretVersionRow | None:
    return s.scalar(
        sa.select(SecretVersionRow).where(
            SecretVersionRow.record_uid == uid, SecretVersionRow.field == slot,
            SecretVersionRow.state == VersionState.CURRENT.value,
        )
    )


_T = SecretVersionRow.__table__
# Prebuilt Core select (no ORM entities): a record load reads every current value on the hot path.
_SELECT_CURRENT = sa.select(_T.c.field, _T.c.version, _T.c.ciphertext).where(
    _T.c.record_uid == sa.bindparam("uid"), _T.c.state == VersionState.CURRENT.value)


def current_values(s: Session, uid: str) -> dict[str, tuple[int, bytes]]:
    """slot → (version, ciphertext) of every current version of a record, in one query."""
    return {f: (v, c) for f, v, c in s.execute(_SELECT_CURRENT, {"uid": uid})}


def list_rows(s: Session, uid: str, slot: str) -> list[SecretVersionRow]:
    """Newest first."""
    return list(
        s.scalars(
            sa.select(SecretVersionRow)
            .where(SecretVersionRow.record_uid == uid, SecretVersionRow.field == slot)
            .order_by(SecretVersionRow.version.desc())
        )
    )


def insert(
    s: Session, uid: str, slot: str, version: int, ciphertext: bytes, state: VersionState,
    rotation_id: str | None,
) -> SecretVersionRow:
    now = utcnow()
    row = SecretVersionRow(
        record_uid=uid, field=slot, version=version, state=VersionState.PENDING.value,
        rotation_id=rotation_id, ciphertext=ciphertext, created_at=now, updated_at=now,
    )
    s.add(row)
    s.flush()
    if state is not VersionState.PENDING:
        set_state(s, row, state)
    return row


def set_state(s: Session, row: SecretVersionRow, state: VersionState) -> None:
    """Move `row` to `state`. To `current`: the old current becomes `previous` first (same transaction)."""
    if row.state == state.value:
        return
    if row.state == VersionState.CURRENT.value:
        raise VaultError(
            f"version {row.version} of {row.field!r} is current; promote another version instead"
        )
    now = utcnow()
    if state is VersionState.CURRENT:
        old = current_row(s, row.record_uid, row.field)
        if old is not None:
            old.state, old.updated_at = VersionState.PREVIOUS.value, now
            s.flush()  # demote before promote: the partial unique index allows one current at a time
    row.state, row.updated_at = state.value, now
    s.flush()


def trim(s: Session, uid: str, slot: str, depth: int) -> int:
    """Delete the oldest `previous`/`failed` versions beyond `depth`; returns how many."""
    old = list(
        s.scalars(
            sa.select(SecretVersionRow)
            .where(
                SecretVersionRow.record_uid == uid, SecretVersionRow.field == slot,
                SecretVersionRow.state.in_([VersionState.PREVIOUS.value, VersionState.FAILED.value]),
            )
            .order_by(SecretVersionRow.version.desc())
            .offset(depth)
        )
    )
    for row in old:
        s.delete(row)
    s.flush()
    return len(old)
