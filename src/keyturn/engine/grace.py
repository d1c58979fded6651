"""Replaced identity PSKs are deleted after their grace period (`meraki-ipsk`, issue 19).

A `meraki-ipsk` rotation creates the new identity PSK beside the old one — both work — and commits;
the old one must go once the profile's ``grace`` (default 24h) has passed since that commit. The
pending deletion is not a row of its own: it is **derived from durable state** — the account's current
secret version and the time it became current (`updated_at` of the version row) — so it is written by
the same transaction as the commit, survives every restart, and is done by whichever keyturn process
sweeps next: `keyturn recover` and `keyturn rotate` (after their recovery), and `keyturn serve` every
`SWEEP_EVERY` seconds.

Sweeping one account, in order (each step can only make it skip, never delete more):

1. no rotation ever ran on the account (every version imported or set by hand), not due (now <
   commit of the current version + grace), or already swept (record meta ``ipsk_grace``: the current
   version and the newest version then) → skip. A rotation that rolled back or was settled backward
   adds a newer (failed) version, so its created iPSK is swept too — after the same grace;
2. take the account's rotation lock (a rotation running on it → skip, the next sweep retries);
3. a `pending` version (an unsettled rotation whose candidate may sit on the SSID) → skip;
4. the target deletes every iPSK of the family whose passphrase is not the current secret — and
   refuses, deleting nothing, when no iPSK holds the current secret (`delete_replaced`);
5. the record meta ``ipsk_grace`` notes the version swept, a ``retire`` step is journaled on the
   rotation that made it current, and ``ipsk.replaced_deleted`` is audited with the names and ids
   (never a passphrase).

Example:
    results = await sweep_grace(engine)      # [GraceResult(title, state="deleted", names=[...]), ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from keyturn.engine.accounts import resolve_account
from keyturn.engine.outcome import Step, StepStatus
from keyturn.engine.profile import META_KEY, load_profile
from keyturn.engine.rotate import RotationEngine
from keyturn.engine.steps import describe
from keyturn.errors import KeyturnError, RotationLocked
from keyturn.vault.storage import RecordRow
from keyturn.vault.versions import VersionState

log = logging.getLogger("keyturn.engine.grace")

KIND = "meraki-ipsk"
SWEPT_KEY = "ipsk_grace"     # record meta: {"version": N, "at": ISO time} of the last sweep done
SWEEP_EVERY = 60.0           # seconds between sweeps in `keyturn serve`


@dataclass(frozen=True)
class GraceResult:
    """What one sweep did for one account: `state` is deleted | waiting | skipped | failed."""

    uid: str
    title: str
    state: str
    detail: str = ""
    names: list[str] = field(default_factory=list)


def _ipsk_records(engine: RotationEngine) -> list[str]:
    """Uids of records whose profile names meraki-ipsk (the SQL filter only narrows; JSON decides)."""
    with engine.vault.unit(write=False) as session:
        rows = session.execute(sa.select(RecordRow.uid, RecordRow.meta_json)
                               .where(RecordRow.meta_json.contains(KIND, autoescape=True))).all()
    return [uid for uid, meta in rows if (json.loads(meta).get(META_KEY) or {}).get("target") == KIND]


async def sweep_grace(engine: RotationEngine, *, now: datetime | None = None) -> list[GraceResult]:
    """Sweep every `meraki-ipsk` account once (see the module docstring); never raises for one account."""
    uids = await engine.db(_ipsk_records, engine)
    return [await _sweep_one(engine, uid, now or datetime.now(UTC)) for uid in uids]


async def _sweep_one(engine: RotationEngine, uid: str, now: datetime) -> GraceResult:
    from keyturn.targets.meraki_ipsk import MerakiIpskTarget, grace_of

    vault = engine.vault
    try:
        user = await engine.db(vault.get, uid)
        profile = load_profile(user)
        versions = await engine.db(vault.versions, uid)
        current = next((v for v in versions if v.state is VersionState.CURRENT), None)
        if current is None:
            return GraceResult(uid, user.title, "skipped", "no current secret")
        if not any(v.rotation_id for v in versions):  # imported or set by hand: keyturn created nothing
            return GraceResult(uid, user.title, "skipped", "no rotation has created an identity PSK yet")
        # Swept for this current version and every version that existed then (a later rotation that
        # rolled back, or was settled backward, leaves a newer version whose iPSK may need deleting).
        through = max(v.version for v in versions)
        swept = user.meta.get(SWEPT_KEY) or {}
        if swept.get("version") == current.version and swept.get("through", current.version) >= through:
            return GraceResult(uid, user.title, "skipped", f"version {current.version} already swept")
        due = current.updated_at.astimezone(UTC) + grace_of(profile.options)
        if now < due:
            return GraceResult(uid, user.title, "waiting",
                               f"replaced identity PSKs go at {due:%Y-%m-%d %H:%M:%S}Z")
        ra = await engine.db(resolve_account, vault, user, profile)
    except KeyturnError as exc:
        return GraceResult(uid, uid, "failed", describe(exc))
    owner = f"grace-{uuid.uuid4().hex}"
    key = ra.account.lock_key
    try:
        token = await engine.db(engine.locks.acquire, key, owner)
    except RotationLocked:
        return GraceResult(uid, user.title, "skipped", "a rotation holds the account; next sweep")
    try:
        versions = await engine.db(vault.versions, uid)   # again, under the lock
        if any(v.state is VersionState.PENDING for v in versions):
            return GraceResult(uid, user.title, "skipped", "an unsettled rotation (pending version); "
                                                           "`keyturn recover` settles it first")
        secret = await engine.db(vault.secret, uid)
        if secret is None:
            return GraceResult(uid, user.title, "skipped", "no current secret")
        target = engine.targets.get(KIND)
        assert isinstance(target, MerakiIpskTarget)
        try:
            gone = await target.delete_replaced(ra.account, [secret])
        except KeyturnError as exc:
            log.warning("grace sweep of %s: %s", user.title, describe(exc))
            return GraceResult(uid, user.title, "failed", describe(exc))
        names = [g["name"] for g in gone]
        through = max(v.version for v in versions)
        await engine.db(_note, engine, uid, current.version, through, current.rotation_id, gone, now)
        return GraceResult(uid, user.title, "deleted", f"{len(gone)} replaced identity PSK(s) deleted", names)
    finally:
        await engine.db(engine.locks.release, key, owner, token)


def _note(engine: RotationEngine, uid: str, version: int, through: int, rotation_id: str | None,
          gone: list[dict[str, str]], now: datetime) -> None:
    """Journal + audit + the meta marker of one sweep (names and ids only, never a passphrase)."""
    vault = engine.vault
    message = (f"grace over: replaced identity PSK(s) {', '.join(g['name'] for g in gone)} deleted"
               if gone else "grace over: no replaced identity PSK left to delete")
    with vault.unit():  # one transaction: the marker, the audit entry and the journal step
        vault.set_meta(uid, SWEPT_KEY, {"version": version, "through": through, "at": now.isoformat()},
                       actor=engine.actor)
        vault.audit.append("ipsk.replaced_deleted", actor=engine.actor, record_uid=uid,
                           details={"version": version, "rotation_id": rotation_id, "deleted": gone})
        if rotation_id:
            engine.journal.step(rotation_id, Step.RETIRE.value, StepStatus.OK, message, audit=vault.audit,
                                record_uid=uid, actor=engine.actor)


async def sweep_forever(engine: RotationEngine, stop: asyncio.Event, *, every: float = SWEEP_EVERY) -> None:
    """`keyturn serve`'s loop: sweep, then wait `every` seconds or until `stop`."""
    while not stop.is_set():
        try:
            for result in await sweep_grace(engine):
                if result.state in ("deleted", "failed"):
                    log.info("grace sweep: %s: %s %s", result.title, result.state, result.detail)
        except KeyturnError as exc:  # e.g. the database briefly unavailable: the next sweep retries
            log.error("grace sweep failed: %s", describe(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


__all__ = ["SWEEP_EVERY", "GraceResult", "sweep_forever", "sweep_grace"]
