"""Record integrity: tag every record row, refuse a row whose tag does not match, upgrade old vaults.

Why: script attachments (`meta.scripts`), the `Shell` custom field and rotation-profile options decide
what runs, with the passwords, at rotation time. They are plain JSON in the record row (they hold no
secret), so before tags anyone with write access to the database could attach a script and receive
every password it rotates. Now each row carries ``mac`` = `Barrier.record_mac` over its uid, type,
title, stored field lists and metadata; `check` runs on every read of a record for use, and a row that
fails it raises `RecordTampered` (the record is refused; nothing of it is used).

Upgrade of a vault created before tags (its key check is version 1, see `barrier`): the first
`Vault.open` by this version runs the upgrade in ONE write transaction — creates the integrity key,
tags every record as it is, re-keys the audit chain (`AuditLog.rekey_chain_on`), writes a version-2
key check and appends a ``vault.integrity.upgrade`` audit entry with the counts. Tagging the records as
they are at that moment trusts the database as much as the previous version did — there is nothing
older to compare with; requiring a manual step instead would make every record unreadable after an
upgrade. From then on the version-2 key check says tags are mandatory: a missing integrity key, an
untagged row or a wrong tag is tampering, never "an old vault".
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from keyturn.errors import RecordTampered
from keyturn.vault.barrier import Barrier
from keyturn.vault.records import title_key
from keyturn.vault.storage import RecordData, RecordRow

ACTION_UPGRADE = "vault.integrity.upgrade"
ACTION_RESEAL = "record.reseal"
_TITLE_SHOWN = 60  # characters of a (possibly hostile) title shown in a message


def seal(barrier: Barrier, row: RecordRow) -> None:
    """Set the row's tag from its current columns (call after every change to them)."""
    row.mac = barrier.record_mac(row.uid, row.type, row.title, row.fields_json, row.custom_json,
                                 row.meta_json)


def check(barrier: Barrier, row: RecordData) -> None:
    """`RecordTampered` unless the row's tag matches its columns and its lookup key its title."""
    reason = None
    if row.mac is None:
        reason = "it has no integrity tag"
    elif not barrier.record_mac_matches(row.mac, row.uid, row.type, row.title, row.fields_json,
                                        row.custom_json, row.meta_json):
        reason = "its integrity tag does not match"
    elif row.title_key != title_key(row.title):
        reason = "its title lookup key does not match its title"
    if reason is not None:
        raise RecordTampered(tampered_message(row.uid, row.title, reason), record_uid=row.uid)


def seal_all_in(s: Session, barrier: Barrier) -> int:
    """Tag every record row as it is now (the one-time upgrade); returns how many."""
    count = 0
    for row in s.scalars(sa.select(RecordRow).order_by(RecordRow.uid)):
        seal(barrier, row)
        count += 1
    return count


def tampered_message(uid: str, title: str, reason: str) -> str:
    shown = title if len(title) <= _TITLE_SHOWN else title[:_TITLE_SHOWN] + "…"
    return (
        f"record {uid} ({shown!r}) failed its integrity check ({reason}): its type, title, fields or "
        "metadata (script attachments, Shell, rotation profile) were changed outside keyturn, by "
        "someone with write access to the database; keyturn refuses to use it. Run `keyturn vault "
        "check` (every record and the audit chain), then restore the database from a backup, remove the "
        f"record (`keyturn record rm {uid}`) or, after reviewing it with `keyturn vault reseal {uid}`, "
        "accept it there"
    )


def raw_view(row: RecordData) -> dict[str, Any]:
    """What an admin reviews before a reseal: the row's stored, unverified columns (no secret value is
    stored in them; secret fields show only their slot name)."""
    return {
        "uid": row.uid, "type": row.type, "title": row.title, "fields": _json(row.fields_json),
        "custom": _json(row.custom_json), "meta": _json(row.meta_json),
    }


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # not JSON at all: shown as stored


__all__ = ["ACTION_RESEAL", "ACTION_UPGRADE", "check", "raw_view", "seal", "seal_all_in", "tampered_message"]
