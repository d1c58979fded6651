"""Rotation and recovery of a secret the platform makes itself (`targets.base.Generating`: a Meraki
Dashboard API key). The ten steps of `keyturn.engine.rotate` with the order a generated secret needs:

    1 lock · 2 verify current (+ list the identity's keys; refuse when the platform's limit is reached
    by keys keyturn does not hold) · 3 intent, durable · 5 generate (once) · 4 write-ahead: the new
    key pending, durable · 7 verify new (bounded retries while it propagates) · 8 commit · retire:
    revoke the old key · 9 scripts · 10 audit

`old` is the record's current secret: it authenticates every call up to the commit, and it is what
`retire` revokes (by the platform's handle, e.g. the key's last four characters) once the new one has
verified and is current. Why each durable point is safe (crash right after it → what recovery sees):

* **before the intent** (lock, verify current): no key was asked for; nothing to do.
* **intent** (`generate` journaled before the request): a key may exist that the vault never saw.
  Settling lists the identity's keys with the current key — only if it still verifies — and revokes
  any key neither current nor pending that the platform created from the intent's time on (at the
  intent at most the current key existed: step 2 refuses otherwise), so an orphan never holds one of
  the two slots for long. The current key is never touched.
* **write-ahead** (the new key pending): recovery verifies both. The new one works → finish forward
  (commit, revoke the old). Otherwise the old one works → drop the new one and revoke it. Neither →
  both kept, `unverified`, probed again next time. The vault's current key is unchanged until a
  verified commit, so it always holds a key that worked when it was last checked.
* **commit** (the new key current, verified): recovery revokes the old key if it is still listed.
* **retire** and later: as any committed rotation (scripts, outcome).

A new key that never verifies within the propagation budget is revoked (with the old key, which still
works) and dropped; the old key stays current and the outcome says why. A key that did not verify is
never the one committed, and the old key is revoked only after the new one verified and was committed.
Keys whose handles collide (1 in 65,536 for Meraki suffixes) are never revoked by handle: that would
revoke both; the outcome asks a person to do it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from keyturn.engine.accounts import ResolvedAccount, resolve_account
from keyturn.engine.outcome import Outcome, RotationResult, Step, StepStatus
from keyturn.engine.profile import load_profile
from keyturn.engine.steps import REFUSED, describe
from keyturn.errors import KeyturnError, TargetError
from keyturn.secret import Secret
from keyturn.targets.base import Account, Check, Generating, Issued, Target, Verdict
from keyturn.vault.versions import VersionState

if TYPE_CHECKING:
    from keyturn.engine.contracts import EngineCore, RotationRun, Settling
    from keyturn.engine.journal import RotationRow

# A key the platform lists is taken for the interrupted rotation's orphan only if it was created from
# shortly before the intent (clock skew between us and the platform) to the generate call's longest
# possible answer plus the same skew; a key someone made later is left alone.
SKEW = timedelta(minutes=5)
WINDOW = timedelta(minutes=15)


def _gen(target: Target) -> Generating:
    assert isinstance(target, Generating)
    return target


def _names(handles: Iterable[str]) -> str:
    return ", ".join(f"…{h}" for h in handles) or "none"


def _previous_handle(engine: EngineCore, uid: str, gen: Generating) -> str | None:
    """The handle of the newest `previous` version: keyturn's superseded key, which `retire` may not
    have revoked (a crash or an unreachable platform after the commit)."""
    previous = next((v for v in engine.vault.versions(uid) if v.state == VersionState.PREVIOUS), None)
    if previous is None:
        return None
    return gen.handle(engine.vault.version_secret(uid, previous.version))


async def _propagated(engine: EngineCore, target: Target, account: Account, new: Secret) -> Check:
    """Verify `new` until it works or the target's propagation budget is spent (bounded tries, doubling
    waits); the last verdict."""
    plan = _gen(target).propagation(account)
    started, wait = time.monotonic(), plan.backoff
    check = Check(Verdict.INCONCLUSIVE)
    for attempt in range(max(1, plan.tries)):
        check = await engine.check(target, account, new, 1)
        if check.verdict is Verdict.OK:
            return check
        left = plan.timeout - (time.monotonic() - started)
        if attempt + 1 >= plan.tries or left <= 0:
            break
        await engine.sleep(min(wait, left))
        wait *= 2
    return check


async def sweep(gen: Generating, account: Account, using: Secret, since: datetime,
                keep: set[str]) -> list[str]:
    """Revoke the keys created from `since` (minus `SKEW`, up to `WINDOW` after) whose handle is not in
    `keep`: the keys an interrupted rotation made that never reached the vault. Returns their handles."""
    if since.tzinfo is None:  # SQLite hands back naive UTC
        since = since.replace(tzinfo=UTC)
    revoked = []
    issued: list[Issued] = await gen.issued(account, using)
    for key in issued:
        created = key.created_at
        if key.handle in keep or created is None:
            continue
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        if since - SKEW <= created <= since + WINDOW:
            await gen.retire(account, using, key.handle)
            revoked.append(key.handle)
    return revoked


# ------------------------------------------------------------------------------------------ rotation


async def rotate(run: RotationRun, target: Target, ra: ResolvedAccount, old: Secret | None,
                 old_version: int | None) -> RotationResult:
    """Steps 2-10 for a `Generating` target (the module docstring); never raises for platform trouble."""
    e, account, gen = run.e, ra.account, _gen(target)
    if old is None:
        return await run.finish(Outcome.FAILED, "the record holds no key: store the current one as its "
                                "password first (keyturn authenticates with it)", Step.VERIFY_CURRENT)

    # 2 verify current, and what the platform holds
    check = await e.check(target, account, old, ra.profile.max_attempts)
    if check.verdict is Verdict.INCONCLUSIVE:
        detail = f" ({check.detail})" if check.detail else ""
        return await run.finish(Outcome.FAILED, f"Meraki unreachable before the change{detail}; nothing was "
                                "changed, will retry", Step.VERIFY_CURRENT)
    if check.verdict is Verdict.REJECTED:
        return await run.finish(Outcome.FAILED, "Meraki refuses the record's current key (revoked or "
                                "mistyped?); nothing was changed — store a working key in the record",
                                Step.VERIFY_CURRENT)
    mine = gen.handle(old)
    try:
        issued = [k.handle for k in await gen.issued(account, old)]
        stale = await e.db(_previous_handle, e, run.uid, gen)
        others = [h for h in issued if h != mine]
        foreign = [h for h in others if h != stale]
        if foreign and len(issued) >= gen.limit:
            ours = f"…{mine} (keyturn's current) and " if mine in issued else ""
            held = f"{ours}{_names(foreign)} (not keyturn's)"
            return await run.finish(Outcome.FAILED, f"the identity already holds {len(issued)} keys, the "
                                    f"most Meraki allows: {held}; nothing was changed — revoke "
                                    f"{_names(foreign)} in the Dashboard if unused, then rotate again",
                                    Step.VERIFY_CURRENT)
        for handle in others:
            if handle == stale and issued.count(handle) == 1:  # keyturn's superseded key, still listed
                await gen.retire(account, old, handle)
    except (TargetError, OSError) as exc:
        return await run.finish(Outcome.FAILED, f"{describe(exc)}; nothing was changed", Step.VERIFY_CURRENT)
    run.note(Step.VERIFY_CURRENT, StepStatus.OK, f"current key …{mine} verified; identity holds "
             f"{_names(issued)}")

    # 3 intent: durable before the platform is asked (recovery sweeps from this step's time)
    await run.step(Step.GENERATE, StepStatus.OK,
                   f"asking Meraki for a new key (keys before: {_names(issued)})")
    try:
        new = await gen.generate(account, old)
    except REFUSED as exc:
        await run.step(Step.APPLY, StepStatus.FAILED, str(exc), applied="no")
        return await run.finish(Outcome.FAILED, f"{exc}; nothing was changed, the current key stays")
    except (TargetError, OSError) as exc:
        await run.step(Step.APPLY, StepStatus.UNKNOWN, f"{describe(exc)}; a key may have been made",
                       applied="unknown")
        return await run.finish(Outcome.UNVERIFIED, f"generating a key: {describe(exc)}; the current key "
                                "stays, `keyturn recover` revokes any key Meraki made that keyturn never saw")
    handle = gen.handle(new)
    run.note(Step.APPLY, StepStatus.OK, f"Meraki generated key …{handle}", applied="yes")

    # 4 write-ahead: the new key pending, durable
    def write_ahead() -> int:
        version = e.vault.add_version(run.uid, new, state=VersionState.PENDING, rotation_id=run.rid)
        run.queue(Step.WRITE_AHEAD, StepStatus.OK, f"new key stored as pending version {version}",
                   {"candidate_version": version, "old_version": old_version})
        return version

    run.version = await run.flush(write_ahead, then=Step.WRITE_AHEAD)
    collides = handle == mine or handle in issued

    # 7 verify new, while it propagates
    check = await _propagated(e, target, account, new)
    if check.verdict is not Verdict.OK:
        plan = gen.propagation(account)
        why = (f"the new key …{handle} did not authenticate within {plan.timeout:.0f} s ({plan.tries} tries"
               + (f"; {check.detail}" if check.detail else "") + ")")
        if collides:
            await run.drop_candidate()
            return await run.finish(Outcome.NEEDS_ATTENTION, f"{why}; it shares its suffix with a key "
                                    "already there, so keyturn cannot revoke it alone — revoke it in the "
                                    "Dashboard; the current key stays")
        try:
            await gen.retire(account, old, handle)
        except (TargetError, OSError) as exc:
            await run.step(Step.VERIFY_NEW, StepStatus.FAILED, why)
            return await run.finish(Outcome.UNVERIFIED, f"{why}; revoking it failed ({describe(exc)}); both "
                                    "kept, `keyturn recover` settles")
        await run.drop_candidate()
        await run.step(Step.VERIFY_NEW, StepStatus.FAILED, f"{why}; revoked")
        return await run.finish(Outcome.FAILED, f"{why}; it was revoked and the current key …{mine} stays")
    run.note(Step.VERIFY_NEW, StepStatus.OK, f"new key …{handle} verified by login")
    run.verified_by = check.proof.value

    # 8 commit: every record and profile naming this record switches with it
    version = run.version

    def commit() -> None:
        e.vault.promote(run.uid, version)
        run.queue(Step.COMMIT, StepStatus.OK, f"version {version} is current", {})

    await run.flush(commit, then=Step.COMMIT)

    # retire the old key, with the new one
    trouble = ""
    if collides:
        trouble = (f"the old key …{mine} shares its suffix with the new one, so keyturn cannot revoke it "
                   "alone — revoke it in the Dashboard")
        await run.step(Step.RETIRE, StepStatus.FAILED, trouble)
    else:
        try:
            await gen.retire(account, new, mine)
            await run.step(Step.RETIRE, StepStatus.OK, f"old key …{mine} revoked")
        except (TargetError, OSError) as exc:
            trouble = (f"revoking the old key …{mine} failed ({describe(exc)}); `keyturn recover` or the "
                       "next rotation revokes it")
            await run.step(Step.RETIRE, StepStatus.FAILED, trouble)

    # 9 scripts, 10 audit
    from keyturn.engine.steps import scripts_message
    run.scripts = await e.run_scripts(ra, new, old)
    ok = all(s.ok for s in run.scripts)
    run.note(Step.SCRIPTS, StepStatus.OK if ok else StepStatus.FAILED, scripts_message(run.scripts),
             scripts=list(run.scripts))
    if trouble:
        return await run.finish(Outcome.NEEDS_ATTENTION,
                                f"new key …{handle} verified and current, but {trouble}")
    if not ok:
        return await run.finish(Outcome.ROTATED_SCRIPT_ERRORS, f"rotated, but {scripts_message(run.scripts)}")
    return await run.finish(Outcome.ROTATED, f"rotated: new key …{handle} verified and current, old key "
                            f"…{mine} revoked")


# ------------------------------------------------------------------------------------------ recovery


async def settle(rec: Settling, row: RotationRow) -> RotationResult:
    """Finish one interrupted rotation of a `Generating` target (the module docstring)."""
    e = rec.e
    try:
        user = await e.db(e.vault.get, row.record_uid)
        ra = await e.db(resolve_account, e.vault, user, load_profile(user))
    except KeyturnError as exc:
        return await rec.finish(row, Outcome.NEEDS_ATTENTION, f"cannot recover: {describe(exc)}",
                                 StepStatus.FAILED)
    target = e.targets.get(ra.profile.target)
    gen, account, uid = _gen(target), ra.account, row.record_uid
    versions = await e.db(e.vault.versions, uid)
    cand = row.candidate_version or next((v.version for v in versions if v.rotation_id == row.id), None)
    state = next((v.state for v in versions if v.version == cand), None)
    current = await e.db(e.vault.secret, uid)
    steps = await e.db(e.journal.steps, row.id)
    intent = next((s.at for s in steps if s.step == Step.GENERATE.value and s.status is StepStatus.OK), None)
    attempts = ra.profile.max_attempts
    try:
        if state == VersionState.PREVIOUS:
            return await rec.finish(row, Outcome.ROTATED, "recovered: the new key was committed and has "
                                     "since been superseded", StepStatus.OK)
        if state == VersionState.CURRENT:
            assert cand is not None
            new = await e.db(e.vault.version_secret, uid, cand)
            return await _committed(rec, row, ra, gen, new, steps_done={s.step for s in steps
                                                                        if s.status is StepStatus.OK})
        if state == VersionState.PENDING:
            assert cand is not None
            new = await e.db(e.vault.version_secret, uid, cand)
            if await e.verify(target, account, new, 1) is Verdict.OK:
                await e.db(e.vault.promote, uid, cand)
                await rec.step(row, Step.COMMIT, StepStatus.OK,
                               f"version {cand} is current (recovery: the new key verified)")
                return await _committed(rec, row, ra, gen, new, steps_done=set())
            if current is None or await e.verify(target, account, current, attempts) is not Verdict.OK:
                return await rec.finish(row, Outcome.UNVERIFIED, "could not prove either key (Meraki "
                                         "unreachable?); both kept, the next `keyturn recover` probes again",
                                         StepStatus.UNKNOWN)
            revoked = await sweep(gen, account, current, intent or row.started_at, {gen.handle(current)})
            await e.db(e.vault.set_version_state, uid, cand, VersionState.FAILED)
            return await rec.finish(row, Outcome.FAILED, "recovered backward: the new key had not "
                                     f"verified; revoked {_names(revoked)}, the current key "
                                     f"…{gen.handle(current)} stays", StepStatus.OK)
        # no candidate in the vault (or already dropped): was a key asked for?
        if intent is None:
            return await rec.finish(row, Outcome.FAILED, "recovered: interrupted before a key was asked "
                                     "for; nothing was changed", StepStatus.OK)
        if current is None or await e.verify(target, account, current, attempts) is not Verdict.OK:
            return await rec.finish(row, Outcome.UNVERIFIED, "a key may have been generated, but the "
                                     "current key cannot be proved now, so no key is revoked; the next "
                                     "`keyturn recover` tries again", StepStatus.UNKNOWN)
        keep = {gen.handle(current)}
        for v in versions:
            if v.state == VersionState.PENDING:
                keep.add(gen.handle(await e.db(e.vault.version_secret, uid, v.version)))
        revoked = await sweep(gen, account, current, intent, keep)
        return await rec.finish(row, Outcome.FAILED, f"recovered: the rotation stopped after asking for a "
                                 f"key that never became current; revoked {_names(revoked)}, the current "
                                 f"key …{gen.handle(current)} stays", StepStatus.OK)
    except (TargetError, OSError) as exc:
        return await rec.finish(row, Outcome.UNVERIFIED, f"{describe(exc)}; the next `keyturn recover` "
                                 "tries again", StepStatus.UNKNOWN)


async def _committed(rec: Settling, row: RotationRow, ra: ResolvedAccount, gen: Generating, new: Secret,
                     steps_done: set[str]) -> RotationResult:
    """The new key is current: revoke the old one if it is still listed, then scripts and outcome."""
    if Step.RETIRE.value not in steps_done and row.old_version is not None:
        old = await rec.old_secret(row)
        listed = [k.handle for k in await gen.issued(ra.account, new)]
        if old is not None and gen.handle(old) != gen.handle(new) and gen.handle(old) in listed:
            await gen.retire(ra.account, new, gen.handle(old))
            await rec.step(row, Step.RETIRE, StepStatus.OK, f"old key …{gen.handle(old)} revoked (recovery)")
    return await rec.finish_committed(row, ra, new)


__all__ = ["rotate", "settle", "sweep"]
