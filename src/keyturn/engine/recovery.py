"""Recovery: finish every interrupted or unsettled rotation by asking the device (DESIGN §3).

Runs at the start of every `keyturn rotate` and on `keyturn recover`. For each rotation still open in
the journal (`running` after a crash, `unverified`, `needs_attention`) and — on a full run — each
`pending` secret version in the vault, it takes the account lock (stealing it only from a dead
holder) and probes the device with *both* the candidate and the old secret — by stored hash wherever
an admin credential can read it (`hash_first`), so recovery costs no failed login there:

    candidate ok                      → finish forward: save config if needed, promote, run scripts
    candidate rejected, old ok        → finish backward: candidate `failed` (a fresh one next time)
    both rejected                     → reconcile through the admin credential if the profile has one
                                        (the old secret is set again), else `needs_attention`
    anything inconclusive             → leave both, `unverified`; the next recovery probes again

An A/B record (`keyturn.engine.ab`) is probed on its idle account, the one the rotation changed, and
finishing forward swaps the pair with the promotion.

A target that cannot test a login (Meraki without a verifier) is finished forward by re-applying the
candidate through the admin credential (changes are idempotent) when the device confirms it. A
candidate the device rejected is never retried. Rotation ids make every step idempotent, so running
recovery twice, or concurrently from two processes, is safe. Stale locks of dead rotations are released.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keyturn.engine.ab import active_account, swap
from keyturn.engine.accounts import ResolvedAccount, resolve_account
from keyturn.engine.journal import RotationRow, finish_columns
from keyturn.engine.outcome import Outcome, RotationResult, RotationState, ScriptSummary, Step, StepStatus
from keyturn.engine.profile import load_profile
from keyturn.engine.steps import REFUSED, can_verify, describe, save_config, scripts_message
from keyturn.errors import KeyturnError, RecordNotFound, RotationLocked, TargetError
from keyturn.holders import HOST, pid_alive
from keyturn.secret import Secret
from keyturn.targets.base import Account, Checking, Generating, Persisting, Target, Verdict
from keyturn.vault.versions import VersionState

if TYPE_CHECKING:
    from keyturn.engine.contracts import EngineCore

log = logging.getLogger("keyturn.engine.recovery")


def hash_first(verifier: Target, account: Account) -> Account:
    """Probe by stored hash when the verifier can and an admin credential can read it: settling a
    crash must never cost a failed login (DESIGN §3), and the hash says exactly which secret the
    device holds. Other verifiers keep the profile's proof."""
    if account.admin is None or not isinstance(verifier, Checking):
        return account
    return replace(account, options={**account.options, "verify": "hash"})


class Recovery:
    """Settles open rotations for one `RotationEngine` (shares its vault, targets, locks, journal)."""

    def __init__(self, engine: EngineCore) -> None:
        self.e = engine

    async def recover(self, *, full: bool = True) -> list[RotationResult]:
        """Settle every open rotation; `full` also scans the vault for orphan `pending` versions."""
        results = []
        for row in await self.e.db(self.e.journal.open_rotations):
            result = await self.settle(row)
            if result is not None:
                results.append(result)
        if full:
            for record in await self.e.db(self.e.vault.find):
                results.extend(await self._orphans(record.uid))
        released = await self.e.db(self.e.locks.release_stale)
        for info in released:
            log.info("released stale lock %s of rotation %s", info.key, info.owner)
        return results

    async def recover_record(self, uid: str) -> list[RotationResult]:
        """Settle the open rotations and pending versions of one record."""
        results = []
        for row in await self.e.db(self.e.journal.open_rotations, uid):
            result = await self.settle(row)
            if result is not None:
                results.append(result)
        results.extend(await self._orphans(uid))
        return results

    async def _orphans(self, uid: str) -> list[RotationResult]:
        """Pending versions no open rotation accounts for get a recovery rotation of their own."""
        versions = await self.e.db(self.e.vault.versions, uid)
        pending = [v for v in versions if v.state == VersionState.PENDING]
        if not pending:
            return []
        covered = {r.candidate_version for r in await self.e.db(self.e.journal.open_rotations, uid)}
        results = []
        for v in pending:
            if v.version in covered:
                continue
            try:
                record = await self.e.db(self.e.vault.get, uid)
                ra = await self.e.db(resolve_account, self.e.vault, record, load_profile(record))
            except KeyturnError as exc:
                log.warning("pending version %s of %s cannot be recovered: %s", v.version, uid, describe(exc))
                continue
            rid = uuid.uuid4().hex
            await self.e.db(self.e.journal.start, rotation_id=rid, record_uid=uid, title=record.title,
                            target=ra.profile.target, lock_key=ra.account.lock_key)
            await self.e.db(self.e.journal.update, rid, candidate_version=v.version)
            row = await self.e.db(self.e.journal.get, rid)
            if row is not None:
                result = await self.settle(row)
                if result is not None:
                    results.append(result)
        return results

    def _in_flight(self, row: RotationRow) -> bool:
        """A rotation some live process is still running (its lock is held, or it is about to take it)."""
        holder = self.e.locks.holder(row.lock_key) if row.lock_key else None
        if holder is not None and holder.owner == row.id and not self.e.locks.is_stale(holder):
            return holder.pid != os.getpid() or row.state is RotationState.RUNNING
        return (row.state is RotationState.RUNNING and row.host == HOST and row.pid != os.getpid()
                and pid_alive(row.pid) and holder is None)

    async def settle(self, row: RotationRow) -> RotationResult | None:
        """Probe and finish one open rotation; None when another live process is still on it."""
        if await self.e.db(self._in_flight, row):
            return None
        token = None
        if row.lock_key:
            try:
                token = await self.e.db(self.e.locks.acquire, row.lock_key, row.id)
            except RotationLocked:
                return None
        try:
            return await self._settle_locked(row)
        finally:
            if row.lock_key:
                await self.e.db(self.e.locks.release, row.lock_key, row.id, token)

    async def step(self, row: RotationRow, step: Step, status: StepStatus, message: str,
                   details: dict[str, Any] | None = None, **fields: Any) -> None:
        """Journal one step of `row` (its audit entry) with the rotation columns in `fields`."""
        e = self.e
        await e.db(e.journal.step, row.id, step.value, status, message, audit=e.vault.audit,
                   record_uid=row.record_uid, actor=e.actor, details=details, **fields)

    async def finish(self, row: RotationRow, outcome: Outcome, reason: str, status: StepStatus,
                      scripts: tuple[ScriptSummary, ...] = ()) -> RotationResult:
        """The `recover` step and the outcome: one transaction, one audit entry `rotation.recover`."""
        fields: dict[str, Any] = {"scripts": list(scripts)} if scripts else {}
        await self.step(row, Step.RECOVER, status, reason, {"outcome": outcome.value, "reason": reason},
                        **fields, **finish_columns(outcome, reason))
        return RotationResult(record_uid=row.record_uid, title=row.title, target=row.target, outcome=outcome,
                              reason=reason, rotation_id=row.id, duration=row.duration,
                              scripts=scripts or row.scripts)

    def _generating(self, kind: str) -> bool:
        try:
            return isinstance(self.e.targets.get(kind), Generating)
        except KeyturnError:
            return False

    async def _settle_locked(self, row: RotationRow) -> RotationResult:
        e = self.e
        if self._generating(row.target):  # the platform made the secret (`keyturn.engine.generated`)
            from keyturn.engine import generated
            return await generated.settle(self, row)
        try:
            user = await e.db(e.vault.get, row.record_uid)
        except RecordNotFound:
            return await self.finish(row, Outcome.FAILED, "recovered: the record was removed",
                                      StepStatus.SKIPPED)
        versions = await e.db(e.vault.versions, row.record_uid)
        cand = row.candidate_version or next((v.version for v in versions if v.rotation_id == row.id), None)
        state = next((v.state for v in versions if v.version == cand), None)
        if cand is None or state is None:
            return await self.finish(row, Outcome.FAILED, "recovered: interrupted before the candidate was "
                                      "stored; nothing was changed on the device", StepStatus.OK)
        if state == VersionState.FAILED:
            outcome = row.outcome if row.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK) else Outcome.FAILED
            return await self.finish(row, outcome, "recovered: the candidate had already been dropped; "
                                                    "the old "
                                      "secret stays current", StepStatus.OK)
        if state == VersionState.PREVIOUS:
            return await self.finish(row, Outcome.ROTATED, "recovered: the candidate was committed and has "
                                      "since been superseded", StepStatus.OK)
        try:
            ra = await e.db(resolve_account, e.vault, user, load_profile(user))
        except KeyturnError as exc:
            return await self.finish(row, Outcome.NEEDS_ATTENTION, f"cannot recover: {exc}",
                                      StepStatus.FAILED)
        new = await e.db(e.vault.version_secret, row.record_uid, cand)
        if state == VersionState.CURRENT:
            return await self.finish_committed(row, ra, new)
        return await self._probe(row, ra, cand, new)

    async def old_secret(self, row: RotationRow, field: str = "password") -> Secret | None:
        if row.old_version is None:
            return None
        try:
            return await self.e.db(self.e.vault.version_secret, row.record_uid, row.old_version, field)
        except KeyturnError:
            return None

    async def finish_committed(self, row: RotationRow, ra: ResolvedAccount, new: Secret) -> RotationResult:
        """The candidate is already current: redo a failed save, run scripts if they never ran."""
        e = self.e
        steps = await e.db(e.journal.steps, row.id)
        target = None if ra.noop else e.targets.get(ra.profile.target)
        persist_error = None
        save_failed = [s for s in steps if s.step == Step.PERSIST.value][-1:]
        if target is not None and save_failed and save_failed[0].status is StepStatus.FAILED:
            # A/B: committed means swapped, so the candidate belongs to the account handed out now.
            persist_error = await self._persist(target, active_account(ra), new, ra.profile.max_attempts)
        scripts = row.scripts
        if not ra.noop and not any(s.step == Step.SCRIPTS.value for s in steps):
            scripts = await e.run_scripts(ra, new, await self.old_secret(row, ra.secret_field))
            await self.step(row, Step.SCRIPTS,
                            StepStatus.OK if all(s.ok for s in scripts) else StepStatus.FAILED,
                            scripts_message(scripts), scripts=list(scripts))
        how = "the new secret was already committed"
        return await self._forward_outcome(row, ra, scripts, persist_error, how)

    async def _forward_outcome(self, row: RotationRow, ra: ResolvedAccount,
                               scripts: tuple[ScriptSummary, ...], persist_error: str | None,
                               how: str) -> RotationResult:
        if persist_error is not None:
            reason = (f"recovered forward ({how}) but saving the configuration failed ({persist_error}); "
                      "will retry")
            return await self.finish(row, Outcome.NEEDS_ATTENTION, reason, StepStatus.FAILED, scripts)
        if not all(s.ok for s in scripts):
            return await self.finish(row, Outcome.ROTATED_SCRIPT_ERRORS, f"recovered forward ({how}); "
                                      f"{scripts_message(scripts)}", StepStatus.OK, scripts)
        verifier_kind = ra.verifier_kind
        verified = verifier_kind is not None and can_verify(self.e.targets.get(verifier_kind), ra.account)
        outcome = Outcome.ROTATED if verified else Outcome.ROTATED_UNVERIFIABLE
        return await self.finish(row, outcome, f"recovered forward: {how}", StepStatus.OK, scripts)

    async def _persist(self, target: Target, account: Account, secret: Secret | None,
                       attempts: int) -> str | None:
        if not isinstance(target, Persisting):
            return None
        error = None
        for _ in range(max(1, attempts)):
            try:
                await save_config(target, account, secret)
                return None
            except (TargetError, OSError) as exc:
                error = describe(exc)
        return error

    async def _commit_forward(self, row: RotationRow, ra: ResolvedAccount, cand: int, new: Secret,
                              how: str) -> RotationResult:
        e = self.e
        target = None if ra.noop else e.targets.get(ra.profile.target)
        persist_error = None
        if target is not None:
            persist_error = await self._persist(target, ra.account, new, ra.profile.max_attempts)
        if ra.ab is not None:  # A/B: the swap commits with the candidate (`keyturn.engine.ab`)
            await e.unit(lambda: swap(e.vault, row.record_uid, cand, rotation_id=row.id, actor=e.actor))
        else:
            await e.db(e.vault.promote, row.record_uid, cand)
        await self.step(row, Step.COMMIT, StepStatus.OK, f"version {cand} is current (recovery)")
        scripts = row.scripts
        steps = await e.db(e.journal.steps, row.id)
        if not ra.noop and not any(s.step == Step.SCRIPTS.value for s in steps):
            scripts = await e.run_scripts(ra, new, await self.old_secret(row, ra.secret_field))
            await self.step(row, Step.SCRIPTS,
                            StepStatus.OK if all(s.ok for s in scripts) else StepStatus.FAILED,
                            scripts_message(scripts), scripts=list(scripts))
        return await self._forward_outcome(row, ra, scripts, persist_error, how)

    async def _drop(self, row: RotationRow, cand: int, reason: str) -> RotationResult:
        await self.e.db(self.e.vault.set_version_state, row.record_uid, cand, VersionState.FAILED)
        return await self.finish(row, Outcome.FAILED, reason, StepStatus.OK)

    async def _probe(self, row: RotationRow, ra: ResolvedAccount, cand: int, new: Secret) -> RotationResult:
        e, account, attempts = self.e, ra.account, ra.profile.max_attempts
        old = await e.db(e.vault.secret, row.record_uid, ra.secret_field)
        verifier = e.targets.get(ra.verifier_kind) if ra.verifier_kind else None
        target = None if ra.noop else e.targets.get(ra.profile.target)
        if verifier is not None and can_verify(verifier, account):
            account = hash_first(verifier, account)
            v_new = await e.verify(verifier, account, new, attempts)
            if v_new is Verdict.OK:
                return await self._commit_forward(row, ra, cand, new, "the device has the new secret")
            v_old = await e.verify(verifier, account, old, attempts) if old is not None else Verdict.REJECTED
            if v_new is Verdict.REJECTED and v_old is Verdict.OK:
                return await self._drop(row, cand, "recovered backward: the device still has the old secret; "
                                        "candidate dropped (a fresh one is generated next time)")
            if v_new is Verdict.REJECTED and v_old is Verdict.REJECTED:
                return await self._reconcile(row, ra, target or verifier, cand, new, old)
            reason = ("device unreachable: could not probe either secret; both kept, the next "
                      "`keyturn recover` probes again")
            return await self.finish(row, Outcome.UNVERIFIED, reason, StepStatus.UNKNOWN)
        if target is not None and account.admin is not None:
            try:
                await target.change(account, old, new)
            except REFUSED as exc:
                return await self._drop(row, cand, f"recovered backward: re-applying the candidate was "
                                                   f"refused "
                                        f"({exc}); candidate dropped, the old secret stays current")
            except (TargetError, OSError) as exc:
                return await self.finish(row, Outcome.UNVERIFIED, f"device unreachable "
                                                                   f"({describe(exc)}); both "
                                          "kept, the next `keyturn recover` tries again", StepStatus.UNKNOWN)
            return await self._commit_forward(row, ra, cand, new, "the candidate was re-applied and "
                                                                  "confirmed")
        return await self.finish(row, Outcome.NEEDS_ATTENTION, "cannot probe: the target cannot test a "
                                                                "login and "
                                  "no verifier is configured; a person must check which secret works",
                                  StepStatus.FAILED)

    async def _reconcile(self, row: RotationRow, ra: ResolvedAccount, target: Target, cand: int, new: Secret,
                         old: Secret | None) -> RotationResult:
        """Both secrets rejected (drift): set the old secret again through the admin credential."""
        e, account = self.e, ra.account
        if account.admin is None or old is None or ra.noop:
            return await self.finish(row, Outcome.NEEDS_ATTENTION, "neither the candidate nor the current "
                                      "secret logs in; a person must look (an admin credential on the "
                                      "profile "
                                      "lets keyturn reconcile)", StepStatus.FAILED)
        try:
            await target.change(account, new, old)
            await self._persist(target, account, old, ra.profile.max_attempts)
        except (TargetError, OSError) as exc:
            log.info("reconcile of %s failed: %s", row.record_uid, describe(exc))
        if await e.verify(target, hash_first(target, account), old, ra.profile.max_attempts) is Verdict.OK:
            return await self._drop(row, cand, "recovered: neither secret logged in; the current secret "
                                               "was set "
                                    "again through the admin credential and verified; candidate dropped")
        return await self.finish(row, Outcome.NEEDS_ATTENTION, "neither secret logs in and reconciling "
                                                                "through "
                                  "the admin credential failed; a person must look", StepStatus.FAILED)
