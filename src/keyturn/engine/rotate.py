"""The rotation state machine: the ten steps of DESIGN §3, exactly, for one account.

    1 lock · 2 verify current · 3 generate · 4 write-ahead · 5 apply · 6 persist · 7 verify new
    · 8 commit · 9 post-rotation scripts · 10 audit

Every step is journaled as the audit entry `rotation.<step>` (`keyturn.engine.journal`; a durable
phase commits it before the next one starts); it never carries a secret value. The candidate secret is
stored encrypted as a `pending` version *before* the device is touched, so a crash at any point leaves
something recovery can finish forward or backward (`keyturn.engine.recovery`). Three verdicts drive
three paths: `ok` goes on, `rejected` rolls back, `inconclusive` keeps both secrets and leaves the
rotation `unverified` — the engine never guesses.

Use:

    engine = RotationEngine(vault)
    result = await engine.rotate("sw01-netops")      # RotationResult(outcome=Outcome.ROTATED, ...)
    await engine.aclose()
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from keyturn.engine.ab import swap
from keyturn.engine.accounts import ResolvedAccount, resolve_account
from keyturn.engine.group_commit import GroupCommit
from keyturn.engine.hooks import kill_point
from keyturn.engine.journal import Journal, finish_columns, write_tx
from keyturn.engine.locks import LockManager
from keyturn.engine.outcome import Outcome, RotationResult, ScriptSummary, Step, StepStatus
from keyturn.engine.ports import ScriptResultLike, ScriptsRunner, VaultLike
from keyturn.engine.profile import NOOP_KIND, RotationProfile, check_noop_effect, load_profile
from keyturn.engine.recovery import Recovery
from keyturn.engine.steps import (
    REFUSED,
    can_verify,
    describe,
    proved,
    save_config,
    scripts_message,
    summarize,
)
from keyturn.errors import (
    KeyturnError,
    LeaseLost,
    RateLimited,
    RotationLocked,
    TargetError,
)
from keyturn.secret import Secret
from keyturn.targets import peer_trust
from keyturn.targets.base import Account, Check, Checking, Generating, Persisting, Proof, Target, Verdict
from keyturn.targets.iosxe_verify import LEDGER_MEMO, StoredHashMemo
from keyturn.vault.versions import VersionState

if TYPE_CHECKING:
    from keyturn.engine.ratelimit import Budgets

log = logging.getLogger("keyturn.engine")
T = TypeVar("T")

class TargetPool:
    """One target instance per kind, shared by every rotation (connection reuse); closed together.

    Without a `factory`, targets come from the registry: the Meraki ones share one per-organisation
    budget (`budgets`): the one given (e.g. `RedisOrgBudgets`, shared by every worker), else an
    in-process `OrgBudgets` at `meraki_share` of the documented rate; the SSH ones store a resource's
    first host key in the vault through `host_keys` (``ssh_host_key=tofu``; set by the engine using
    the pool)."""

    SSH_KINDS = ("iosxe-ssh", "iosxe-enable-secret")

    def __init__(self, factory: Callable[[str], Target] | None = None, *, meraki_share: float = 0.9,
                 host_keys: Callable[[str, str, str], Awaitable[str]] | None = None,
                 budgets: Budgets | None = None) -> None:
        from keyturn.engine.ratelimit import OrgBudgets
        self._factory = factory
        self._targets: dict[str, Target] = {}
        self.budgets: Budgets = budgets if budgets is not None else OrgBudgets(headroom=meraki_share)
        self.host_keys = host_keys

    def get(self, kind: str) -> Target:
        target = self._targets.get(kind)
        if target is None:
            if self._factory is not None:
                target = self._factory(kind)
            else:
                from keyturn.targets.registry import create_target
                io: dict[str, Any] = ({"budget": self.budgets} if kind.startswith("meraki") else
                                      {"host_keys": self.record_host_key} if kind in self.SSH_KINDS else {})
                target = create_target(kind, **io)
            self._targets[kind] = target
        return target

    async def record_host_key(self, resource_uid: str, where: str, fingerprint: str) -> str:
        """`keyturn.targets.ssh_trust.HostKeyRecorder`, bound late: `host_keys` is set after the pool."""
        if self.host_keys is None:
            from keyturn.errors import HostKeyNotTrusted
            raise HostKeyNotTrusted(f"{where}: ssh_host_key=tofu, but no vault here stores the first key "
                                    "seen; nothing was sent")
        return await self.host_keys(resource_uid, where, fingerprint)

    async def aclose(self) -> None:
        targets, self._targets = list(self._targets.values()), {}
        for target in targets:
            try:
                await target.aclose()
            except Exception:  # closing must not hide the rotation results
                log.warning("closing target %s failed", target.kind, exc_info=True)


async def _default_scripts(**kwargs: Any) -> Sequence[ScriptResultLike]:
    from keyturn.scripts import run_rotation_scripts
    return await run_rotation_scripts(**kwargs)


class RotationEngine:
    """Rotates accounts. Thread-safe vault calls run off the event loop; one instance per process.

    `targets` shares target instances; `scripts` runs post-rotation scripts (default
    `keyturn.scripts.run_rotation_scripts`); `attempts`/`backoff` bound retries of inconclusive
    verifications (exponential back-off from `backoff` seconds, at most `backoff_max`).
    """

    def __init__(
        self, vault: VaultLike, *, targets: TargetPool | None = None, scripts: ScriptsRunner | None = None,
        locks: LockManager | None = None, journal: Journal | None = None, backoff: float = 1.0,
        backoff_max: float = 10.0, actor: str = "engine",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.vault = vault
        self.targets = targets or TargetPool(meraki_share=vault.settings.meraki_api_share)
        if self.targets.host_keys is None:
            from keyturn.engine.hostkeys import HostKeyPins
            self.targets.host_keys = HostKeyPins(vault, self.db)
        self.scripts: ScriptsRunner = scripts or _default_scripts
        self.locks = locks or LockManager(vault.engine)
        self.journal = journal or Journal(vault.engine)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.actor = actor
        self.sleep = sleep
        # SQLite serialises writers anyway; one DB thread avoids lock contention between our own threads.
        workers = 1 if vault.engine.dialect.name == "sqlite" else 8
        self._db_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keyturn-db")
        # Concurrent rotations' durable phases share a transaction (`keyturn.engine.group_commit`).
        self.group_commit = GroupCommit(self._together, self._db_pool, parallel=workers)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a synchronous vault/journal call off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_pool, lambda: fn(*args, **kwargs))

    async def aclose(self) -> None:
        await self.targets.aclose()
        self._db_pool.shutdown(wait=True)

    async def verify(self, target: Target, account: Account, secret: Secret, attempts: int) -> Verdict:
        """The verdict of `check`."""
        return (await self.check(target, account, secret, attempts)).verdict

    async def check(self, target: Target, account: Account, secret: Secret, attempts: int) -> Check:
        """Verify with bounded back-off retries while inconclusive; says how it was proved (`Check`).
        An untrusted peer is reported as a trust failure at once (retrying it cannot help)."""
        check = Check(Verdict.INCONCLUSIVE, Proof.NONE)
        for attempt in range(max(1, attempts)):
            trust = peer_trust.Watch()
            try:
                with trust:
                    if isinstance(target, Checking):
                        check = await target.check(account, secret)
                    else:
                        check = Check(await target.verify(account, secret), Proof.LOGIN)
            except KeyturnError as exc:  # the contract says verify never raises; be safe anyway
                log.info("verify raised %s; treating as inconclusive", describe(exc))
                check = Check(Verdict.INCONCLUSIVE, Proof.NONE, describe(exc))
            if check.verdict is not Verdict.INCONCLUSIVE:
                return check
            if trust.failures:
                return Check(Verdict.INCONCLUSIVE, Proof.NONE, trust.reason())
            if attempt + 1 < attempts:
                await self.sleep(min(self.backoff * 2 ** attempt, self.backoff_max))
        return check

    async def run_scripts(self, ra: ResolvedAccount, new: Secret,
                          old: Secret | None) -> tuple[ScriptSummary, ...]:
        """Run the attached post-rotation scripts; a runner crash is reported as one failed script."""
        try:
            results = await self.scripts(
                get_record=self.vault.get, provider=ra.provider, resource=ra.resource, user=ra.user,
                new_password=new, old_password=old,
            )
        except Exception as exc:
            return (ScriptSummary(name="(script runner)", ok=False, exit_code=None, duration=0.0,
                                  error=describe(exc)),)
        return summarize(results)

    async def unit(self, fn: Callable[[], T]) -> T:
        """Run `fn` off the event loop in one transaction: every vault, journal and lock call inside
        it commits together (`Vault.unit`), maybe with other rotations' phases ready at the same time
        (`GroupCommit`: `fn` may run twice, so it changes nothing but the database). Returns once
        committed."""
        return await self.group_commit.run(fn)

    def _together(self, fns: Sequence[Callable[[], Any]]) -> list[Any]:
        with self.vault.unit(batch_audit=True):
            return [fn() for fn in fns]

    async def rotate(self, ref: str, *, rotation_id: str | None = None) -> RotationResult:
        """Rotate the account of record `ref` (uid or unique title). Never raises for rotation trouble:
        every failure is an outcome with a reason that says what happens next.

        `rotation_id` lets a caller that must answer before the rotation ends (the API's 202) choose
        the journal id; by default a fresh uuid4 hex."""
        started = time.monotonic()
        rid = rotation_id or uuid.uuid4().hex
        prep: _Prepared | None = None
        for settle_first in (True, False):
            try:
                prep = await self.unit(functools.partial(self._prepare, ref, rid, settle_first))
            except RotationLocked as exc:
                return await self._refused(rid, ref, exc, started)
            except KeyturnError as exc:
                return RotationResult(record_uid="", title=ref, target="", outcome=Outcome.FAILED,
                                      reason=str(exc), duration=time.monotonic() - started)
            if not prep.unsettled:
                break
            # A previous rotation of this record that never finished is settled first (forward or back).
            await Recovery(self).recover_record(prep.uid)
        assert prep is not None and not prep.unsettled
        run = _Rotation(self, rid, prep.uid, prep.title, prep.kind, prep.ra, started)
        if prep.error is not None:
            return await run.finish(Outcome.FAILED, prep.error, Step.LOCK)
        run.locked, run.token, run.renewed = True, prep.token, prep.acquired
        run.memo = StoredHashMemo(_seen_digest(self.vault), {prep.old_seen} if prep.old_seen else set())
        kill_point(Step.LOCK.value)
        return await run.execute(prep)

    def _prepare(self, ref: str, rid: str, settle_first: bool) -> _Prepared:
        """One transaction before the device is touched: read the account, refuse or hand over an
        unsettled one, then journal the rotation, take the account lock and record step 1."""
        user = self.vault.get(ref)
        kind = str((user.meta.get("rotation") or {}).get("target") or "") or "?"
        try:
            profile = load_profile(user)
            ra = resolve_account(self.vault, user, profile)
            check_noop_effect(profile, user, ra.resource, ra.provider)  # profiles stored before the check
        except KeyturnError as exc:
            self.journal.start(rotation_id=rid, record_uid=user.uid, title=user.title, target=kind,
                               lock_key="")
            return _Prepared(user.uid, user.title, kind, None, error=str(exc))
        versions = list(self.vault.versions(user.uid))
        pending = any(v.state == VersionState.PENDING for v in versions)
        if settle_first and pending:
            return _Prepared(user.uid, user.title, profile.target, ra, unsettled=True)
        key = ra.account.lock_key
        # On the first pass the INSERT also checks that no earlier rotation of the record is open.
        if not self.journal.start(rotation_id=rid, record_uid=user.uid, title=user.title,
                                  target=profile.target, lock_key=key, last_step=Step.LOCK.value,
                                  unless_open=settle_first):
            return _Prepared(user.uid, user.title, profile.target, ra, unsettled=True)
        token, acquired = self.locks.acquire(key, rid), self.locks.clock()
        _write_steps(self, rid, user.uid, [(Step.LOCK, StepStatus.OK, f"account {key} locked", {})],
                     row=False)
        if ra.ab is not None:  # A/B: the idle account is rotated; its secret has a slot of its own
            versions = list(self.vault.versions(user.uid, ra.secret_field))
        current = next((v for v in versions if v.state == VersionState.CURRENT), None)
        return _Prepared(user.uid, user.title, profile.target, ra, pending=pending,
                         old_version=current.version if current is not None else None,
                         old=self.vault.secret(user.uid, ra.secret_field), token=token, acquired=acquired,
                         old_seen=getattr(current, "device_seen", None))

    async def _refused(self, rid: str, ref: str, exc: KeyturnError, started: float) -> RotationResult:
        """The account lock is held: journal the refused rotation (its own transaction)."""
        def write() -> tuple[str, str, str]:
            user = self.vault.get(ref)
            kind = str((user.meta.get("rotation") or {}).get("target") or "") or "?"
            self.journal.start(rotation_id=rid, record_uid=user.uid, title=user.title, target=kind,
                               lock_key="")
            return user.uid, user.title, kind
        try:
            uid, title, kind = await self.unit(write)
        except KeyturnError as again:
            return RotationResult(record_uid="", title=ref, target="", outcome=Outcome.FAILED,
                                  reason=str(again), duration=time.monotonic() - started)
        run = _Rotation(self, rid, uid, title, kind, None, started)
        return await run.finish(Outcome.FAILED, str(exc), Step.LOCK)

    async def recover(self, *, full: bool = True) -> list[RotationResult]:
        """Finish every interrupted rotation (see `keyturn.engine.recovery`)."""
        return await Recovery(self).recover(full=full)


@dataclass
class _Prepared:
    """What `RotationEngine._prepare` read and decided (no secret but the current one)."""

    uid: str
    title: str
    kind: str
    ra: ResolvedAccount | None
    error: str | None = None          # the account cannot be rotated (journaled, not locked)
    unsettled: bool = False           # an earlier rotation must be settled first (nothing written)
    pending: bool = False             # a pending candidate survived recovery
    old_version: int | None = None
    old: Secret | None = None
    token: str = ""                   # the account lock's fencing token
    acquired: float = 0.0             # when it was taken (`LockManager.clock`)
    old_seen: str | None = None       # the current version's `device_seen` (`StoredHashMemo`)


Queued = tuple[Step, StepStatus, str, dict[str, Any]]


def _seen_digest(vault: VaultLike) -> Callable[[Secret, str], str]:
    """`StoredHashMemo.digest` keyed by the vault (its `hmac_value`): binds a secret to the stored-hash
    text a device showed for it; the digest alone tells neither."""
    def digest(secret: Secret, stored: str) -> str:
        return vault.hmac_value(Secret(f"keyturn-device-seen-v1\0{secret.reveal()}\0{stored}"))
    return digest


def _write_steps(engine: RotationEngine, rid: str, uid: str, steps: Sequence[Queued],
                 fence: tuple[str, str] | None = None, *, row: bool = True) -> None:
    """Journal steps (their audit entries, one append for all) inside the caller's transaction (a unit
    of work or its own). `fence` (lock key, token): the journal's UPDATE checks the account lock is
    still this rotation's, else `LeaseLost` (nothing commits). `row=False`: the rotation row already
    says these steps (`Journal.start(last_step=...)`)."""
    if not steps:
        if fence is not None:
            engine.locks.fence(fence[0], rid, fence[1])
        return
    with write_tx(engine.vault.engine) as conn:
        held = engine.locks.held(fence[0], rid, fence[1]) if fence is not None else None
        if not engine.journal.steps_on(conn, rid, [(st.value, status, msg, fields)
                                                   for st, status, msg, fields in steps],
                                       audit=engine.vault.audit, record_uid=uid, actor=engine.actor,
                                       only_if=held, row=row):
            raise engine.locks.lost(fence[0] if fence is not None else "", rid)


class _Rotation:
    """One run of the state machine. Holds only non-secret bookkeeping besides the two secrets."""

    def __init__(self, engine: RotationEngine, rid: str, uid: str, title: str, kind: str,
                 ra: ResolvedAccount | None, started: float) -> None:
        self.e = engine
        self.rid = rid
        self.uid = uid
        self.title = title
        self.kind = kind
        self.ra = ra
        self.started = started
        self.version: int | None = None
        self.scripts: tuple[ScriptSummary, ...] = ()
        self.locked = False
        self.token = ""                       # fencing token of the account lock (`LockManager.fence`)
        self.renewed = 0.0                    # when its lease was last taken or renewed
        self.memo: StoredHashMemo | None = None  # stored hashes proved before and in this rotation
        self.verified_by: str | None = None   # how the new secret was proved (`Proof` value)
        self.warning = ""                     # what the device said a person must know (a lockout)
        self._queued: list[Queued] = []

    # --- bookkeeping ---------------------------------------------------------------------------------

    def note(self, step: Step, status: StepStatus, message: str, **fields: Any) -> None:
        """Queue a step: it is written with the next durable one, in the same transaction. Only for
        steps whose loss in a crash changes nothing recovery does (it always asks the device). The
        test kill hook fires now: a crash here is a crash before the step's record is durable."""
        self.queue(step, status, message, fields)
        kill_point(step.value)

    def queue(self, step: Step, status: StepStatus, message: str, fields: dict[str, Any]) -> None:
        self._queued.append((step, status, message, fields))

    async def step(self, step: Step, status: StepStatus, message: str, **fields: Any) -> None:
        """Journal + audit the queued steps and this one durably, then honour the test kill hook."""
        self.queue(step, status, message, fields)
        await self.flush(lambda: None)
        kill_point(step.value)

    async def flush(self, action: Callable[[], T], *, then: Step | None = None) -> T:
        """One transaction: `action` (a vault change; it may `_queue` steps), then every queued step
        with its audit entry. Returns what `action` returned; the kill hook for `then` fires after
        the commit."""
        before = list(self._queued)

        def write() -> T:
            self._queued = list(before)   # run again alone after a group's rollback: start over
            fence = self._fence(folded=True)
            result = action()
            _write_steps(self.e, self.rid, self.uid, self._queued, fence)
            return result

        try:
            result = await self.e.unit(write)
        except BaseException:
            self._queued = before     # what `action` queued did not commit
            raise
        self._queued = []
        if then is not None:
            kill_point(then.value)
        return result

    def _fence(self, *, folded: bool = False) -> tuple[str, str] | None:
        """Inside a write transaction: renew the account lease or raise `LeaseLost` (write nothing).

        `folded`: the caller's journal UPDATE will check the lock instead (`_write_steps`), so
        unless half the lease has passed (then it is renewed here) this costs no statement; returns
        what that check needs, (lock key, token), or None when there is nothing to check."""
        if not (self.locked and self.ra is not None):
            return None
        key = self.ra.account.lock_key
        if folded and not self.e.locks.renewal_due(self.renewed):
            return key, self.token
        now = self.e.locks.clock()
        self.e.locks.fence(key, self.rid, self.token)
        self.renewed = now
        return None

    async def finish(self, outcome: Outcome, reason: str, at: Step | None = None) -> RotationResult:
        """Step 10: record the outcome (journal + audit) and release the lock, in one transaction."""
        queued, self._queued = self._queued, []
        release = self.locked and self.ra is not None

        def write() -> None:  # queued steps, the failed one, the outcome: one UPDATE, one append
            e = self.e
            fence = self._fence(folded=True)
            steps = [(st.value, status, msg, fields) for st, status, msg, fields in queued]
            if at is not None and at is not Step.AUDIT:
                steps.append((at.value, StepStatus.FAILED, reason, {}))
            steps.append((Step.AUDIT.value, StepStatus.OK, f"outcome {outcome.value}",
                          finish_columns(outcome, reason)))
            outcome_details = {"target": self.kind, "outcome": outcome.value, "reason": reason,
                               "candidate_version": self.version, "verified_by": self.verified_by}
            unlock = None
            if release:
                assert self.ra is not None
                unlock = e.locks.release_bound(self.ra.account.lock_key, self.rid, self.token)
            with write_tx(e.vault.engine) as conn:
                held = e.locks.held(fence[0], self.rid, fence[1]) if fence is not None else None
                if not e.journal.steps_on(conn, self.rid, steps, audit=e.vault.audit, record_uid=self.uid,
                                          actor=e.actor, last_details=outcome_details, only_if=held,
                                          then=unlock):
                    raise e.locks.lost(fence[0] if fence is not None else "", self.rid)

        await self.e.unit(write)
        kill_point(Step.AUDIT.value)
        if release:
            self.locked = False
        return RotationResult(record_uid=self.uid, title=self.title, target=self.kind, outcome=outcome,
                              reason=reason, rotation_id=self.rid,
                              duration=time.monotonic() - self.started, scripts=self.scripts,
                              verified_by=self.verified_by if outcome.rotated else None)

    async def drop_candidate(self) -> None:
        if self.version is not None:
            version = self.version

            def drop() -> None:
                self._fence()
                self.e.vault.set_version_state(self.uid, version, VersionState.FAILED)

            await self.e.unit(drop)

    # --- the ten steps --------------------------------------------------------------------------------

    async def execute(self, prep: _Prepared) -> RotationResult:
        """Steps 2 to 10 after `_prepare` took the lock and journaled step 1."""
        assert self.ra is not None
        key = self.ra.account.lock_key
        try:
            if prep.pending:
                return await self.finish(Outcome.FAILED, "an earlier rotation of this account is still "
                                         "unsettled (its candidate is pending); run `keyturn recover` when "
                                         "the device is reachable, then rotate again", Step.VERIFY_CURRENT)
            return await self._run(self.ra, prep.old, prep.old_version)
        except LeaseLost as exc:  # another rotation took the account over: it settles; write nothing
            log.warning("rotation %s of %s: %s", self.rid, self.uid, exc)
            self.locked = False
            return RotationResult(record_uid=self.uid, title=self.title, target=self.kind,
                                  outcome=Outcome.UNVERIFIED, reason=str(exc), rotation_id=self.rid,
                                  duration=time.monotonic() - self.started)
        except Exception as exc:
            log.exception("rotation %s of %s stopped on an unexpected error", self.rid, self.uid)
            if self.version is None:
                return await self.finish(Outcome.FAILED, f"{describe(exc)}; nothing was changed")
            return await self.finish(Outcome.UNVERIFIED, f"{describe(exc)}; both secrets kept; "
                                     "`keyturn recover` will probe the device and finish")
        finally:
            if self.locked:
                await self.e.db(self.e.locks.release, key, self.rid, self.token)

    async def _run(self, ra: ResolvedAccount, old: Secret | None, old_version: int | None) -> RotationResult:
        e, account, profile = self.e, ra.account, ra.profile
        attempts = profile.max_attempts
        if self.memo is not None:   # IOS XE stored-hash proofs: one slow hash per rotation, not two
            account.probes.device[LEDGER_MEMO] = self.memo
        target = None if ra.noop else e.targets.get(profile.target)
        verifier_kind = ra.verifier_kind
        verifier = e.targets.get(verifier_kind) if verifier_kind else None
        checks = verifier is not None and can_verify(verifier, account)
        if isinstance(target, Generating):  # the platform makes the secret (`keyturn.engine.generated`)
            from keyturn.engine import generated
            return await generated.rotate(self, target, ra, old, old_version)

        # 2 verify current
        if checks and old is not None:
            assert verifier is not None
            with peer_trust.Watch() as trust:
                check = await e.check(verifier, account, old, attempts)
            if check.verdict is Verdict.INCONCLUSIVE and trust.failures:  # not flaky: do not retry
                return await self.finish(Outcome.FAILED, trust.reason(), Step.VERIFY_CURRENT)
            if check.verdict is Verdict.INCONCLUSIVE:
                detail = f": {check.detail}" if check.detail else ""
                return await self.finish(Outcome.FAILED, "device unreachable before change; will retry "
                                         f"(nothing was changed){detail}", Step.VERIFY_CURRENT)
            if check.verdict is Verdict.REJECTED:
                if account.admin is None:
                    return await self.finish(Outcome.FAILED, f"current password rejected by the device "
                                             f"({proved(check)}); set an admin credential to reconcile",
                                             Step.VERIFY_CURRENT)
                self.note(Step.VERIFY_CURRENT, StepStatus.FAILED, f"current secret rejected by the device "
                          f"({proved(check)}); reconciling through the admin credential")
            else:
                self.note(Step.VERIFY_CURRENT, StepStatus.OK, f"current secret verified {proved(check)}")
        elif old is None:
            if account.admin is None and not ra.noop:
                return await self.finish(Outcome.FAILED, "the record has no current password and the profile "
                                         "no admin credential to set one", Step.VERIFY_CURRENT)
            self.note(Step.VERIFY_CURRENT, StepStatus.SKIPPED, "no current secret in the vault; the "
                            "admin credential sets the first one")
        else:
            self.note(Step.VERIFY_CURRENT, StepStatus.SKIPPED, "the target cannot test a login")

        # 3 generate
        from keyturn.policy import effective, generate, parse_policy
        rules_target = target or verifier
        rules = rules_target.constraints if rules_target is not None else e.targets.get(NOOP_KIND).constraints
        new = generate(effective(parse_policy(profile.policy), rules))
        self.note(Step.GENERATE, StepStatus.OK, f"new secret of {len(new)} characters generated")

        # 4 write-ahead: durable (with steps 2 and 3) before the device is touched
        def write_ahead() -> int:
            version = e.vault.add_version(self.uid, new, state=VersionState.PENDING, rotation_id=self.rid)
            self.queue(Step.WRITE_AHEAD, StepStatus.OK, f"candidate stored as pending version {version}",
                        {"candidate_version": version, "old_version": old_version})
            return version

        self.version = await self.flush(write_ahead, then=Step.WRITE_AHEAD)

        if ra.noop:
            return await self._noop(ra, verifier if checks else None, new, old, attempts)
        assert target is not None

        # 5 apply
        applied = "yes"
        trust = peer_trust.Watch()
        try:
            with trust:
                await self._change(target, account, old, new, attempts)
        except REFUSED as exc:
            await self.drop_candidate()
            await self.step(Step.APPLY, StepStatus.FAILED, str(exc), applied="no")
            return await self.finish(Outcome.FAILED, f"{exc}; the old secret stays current")
        except (TargetError, OSError) as exc:
            if trust.nothing_sent:  # every request died in the TLS handshake: the device saw nothing
                await self.drop_candidate()
                await self.step(Step.APPLY, StepStatus.FAILED, trust.reason(), applied="no")
                return await self.finish(Outcome.FAILED, f"{trust.reason()}; the old secret stays current")
            applied = "unknown"
            await self.step(Step.APPLY, StepStatus.UNKNOWN, f"{describe(exc)}; outcome unknown, "
                            "checking with the device", applied="unknown")
        else:
            # Journaled with step 6: a crash before that leaves a pending candidate, and recovery asks
            # the device either way.
            self.note(Step.APPLY, StepStatus.OK, "the device accepted the new secret", applied="yes")

        # 6 persist
        persist_error = await self._persist(target, account, new, attempts) if applied == "yes" else None
        if applied != "yes":
            await self.step(Step.PERSIST, StepStatus.SKIPPED, "change not confirmed; nothing to save yet")

        # 7 verify new
        seen: str | None = None   # what the device stores for the new secret, once proved by it
        if can_verify(target, account):
            check = await e.check(target, account, new, attempts)
            if check.verdict is Verdict.REJECTED:
                await self.step(Step.VERIFY_NEW, StepStatus.FAILED, f"the device rejected the new secret "
                                f"({proved(check)})")
                return await self._roll_back(target, account, new, old, applied, attempts)
            if check.verdict is Verdict.INCONCLUSIVE:
                await self.step(Step.VERIFY_NEW, StepStatus.UNKNOWN, "could not verify the new secret"
                                + (f" ({check.detail})" if check.detail else ""))
                return await self.finish(Outcome.UNVERIFIED, "device state unknown: the new secret "
                                                             "could not be "
                                         "verified; both secrets kept, `keyturn recover` will probe and "
                                         "finish")
            self.note(Step.VERIFY_NEW, StepStatus.OK, f"new secret verified {proved(check)}")
            self.verified_by = check.proof.value
            seen = self.memo.proved_for(new) if self.memo is not None else None
            self.warning = check.warning
            verified = True
        elif applied == "yes":
            self.note(Step.VERIFY_NEW, StepStatus.SKIPPED, "the target cannot test a login; the change "
                            "was confirmed by the target")
            verified = False
        else:
            await self.step(Step.VERIFY_NEW, StepStatus.UNKNOWN, "the target cannot test a login and "
                                                                 "the change "
                            "was not confirmed")
            return await self.finish(Outcome.UNVERIFIED, "device state unknown (change not confirmed); both "
                                     "secrets kept, `keyturn recover` will re-apply and finish")
        if applied == "unknown" and isinstance(target, Persisting):
            persist_error = await self._persist(target, account, new, attempts)

        # 8 commit (one transaction with step 7's record)
        version = self.version

        def commit() -> None:
            if ra.ab is not None:  # the swap commits with the candidate (`keyturn.engine.ab`)
                pair = swap(e.vault, self.uid, version, rotation_id=self.rid, actor=e.actor)
                self.queue(Step.COMMIT, StepStatus.OK, f"version {version} is current: {pair.active} is "
                            f"the active account now, {pair.idle} idle until the next rotation", {})
                return
            e.vault.promote(self.uid, version, seen=seen)
            self.queue(Step.COMMIT, StepStatus.OK, f"version {version} is current"
                        + (f", version {old_version} previous" if old_version else ""), {})

        await self.flush(commit, then=Step.COMMIT)

        # 9 scripts
        self.scripts = await self.e.run_scripts(ra, new, old)
        ok = all(s.ok for s in self.scripts)
        self.note(Step.SCRIPTS, StepStatus.OK if ok else StepStatus.FAILED,
                  scripts_message(self.scripts), scripts=list(self.scripts))

        # 10 audit (with step 9's record)
        if persist_error is not None:
            return await self.finish(Outcome.NEEDS_ATTENTION, f"new secret works but saving the "
                                                              f"configuration "
                                     f"failed ({persist_error}); a reboot would restore the old one — "
                                     "`keyturn recover` will retry the save")
        if not ok:
            return await self.finish(Outcome.ROTATED_SCRIPT_ERRORS, f"rotated, but "
                                                                    f"{scripts_message(self.scripts)}"
                                     f"; see `keyturn rotation log {self.rid[:12]}`")
        if verified and self.warning:
            return await self.finish(Outcome.NEEDS_ATTENTION, f"rotated and verified by "
                                     f"{self.verified_by}, but {self.warning}")
        if verified:
            return await self.finish(Outcome.ROTATED, f"rotated and verified by {self.verified_by}")
        return await self.finish(Outcome.ROTATED_UNVERIFIABLE, "rotated; the target cannot test a login, "
                                 "so the new secret is not verified")

    async def _change(self, target: Target, account: Account, old: Secret | None, new: Secret,
                      attempts: int) -> None:
        """Step 5; a rate-limited request changed nothing, so it is retried after the advised pause."""
        for attempt in range(max(1, attempts)):
            try:
                await target.change(account, old, new)
                return
            except RateLimited as exc:
                if attempt + 1 >= attempts:
                    raise
                await self.e.sleep(min(exc.retry_after or self.e.backoff, self.e.backoff_max))

    async def _persist(self, target: Target, account: Account, secret: Secret,
                       attempts: int) -> str | None:
        """Step 6 with bounded retries; returns the error text if saving failed."""
        if not isinstance(target, Persisting):
            self.note(Step.PERSIST, StepStatus.SKIPPED, "the target needs no save")
            return None
        error = ""
        for attempt in range(max(1, attempts)):
            try:
                await save_config(target, account, secret)
            except (TargetError, OSError) as exc:
                error = describe(exc)
                if attempt + 1 < attempts:
                    await self.e.sleep(min(self.e.backoff * 2 ** attempt, self.e.backoff_max))
                continue
            await self.step(Step.PERSIST, StepStatus.OK, "configuration saved")
            return None
        await self.step(Step.PERSIST, StepStatus.FAILED, error)
        return error

    async def _roll_back(self, target: Target, account: Account, new: Secret, old: Secret | None,
                         applied: str, attempts: int) -> RotationResult:
        """Step 7, rejected: restore the old secret, verify it, drop the candidate."""
        e = self.e
        if old is None:
            return await self.finish(Outcome.NEEDS_ATTENTION, "the device rejected the new secret and "
                                                              "there is "
                                     "no old one to restore; both kept, a person must look")
        if applied == "unknown" and await e.verify(target, account, old, attempts) is Verdict.OK:
            await self.drop_candidate()
            await self.step(Step.ROLLBACK, StepStatus.SKIPPED, "the change never landed; the old secret "
                                                               "works")
            return await self.finish(Outcome.FAILED, "the device was unreachable during the change and "
                                                     "still has "
                                     "the old secret; candidate dropped, will retry")
        note = ""
        try:
            await target.change(account, new, old)   # through the admin, or with the candidate as login
        except (TargetError, OSError) as exc:
            note = f" (restore attempt: {describe(exc)})"
        if isinstance(target, Persisting):
            try:
                await save_config(target, account, old)
            except (TargetError, OSError) as exc:
                note += f" (save after restore: {describe(exc)})"
        if await e.verify(target, account, old, attempts) is Verdict.OK:
            await self.drop_candidate()
            await self.step(Step.ROLLBACK, StepStatus.OK, "old secret restored and verified" + note)
            return await self.finish(Outcome.ROLLED_BACK, "the device rejected the new secret; the old "
                                                          "secret "
                                     "was restored and verified and stays current")
        await self.step(Step.ROLLBACK, StepStatus.FAILED, "the old secret does not log in either" + note)
        return await self.finish(Outcome.NEEDS_ATTENTION, "rollback failed: neither secret verified; "
                                                          "both kept, "
                                 "a person must look (`keyturn recover` will probe again)")

    async def _noop(self, ra: ResolvedAccount, verifier: Target | None, new: Secret, old: Secret | None,
                    attempts: int) -> RotationResult:
        """NOOP profiles: the scripts are the change (step 5); verified when a verifier is configured."""
        e, account = self.e, ra.account
        self.scripts = await e.run_scripts(ra, new, old)
        ok = all(s.ok for s in self.scripts)
        await self.step(Step.APPLY, StepStatus.OK if ok else StepStatus.FAILED,
                        "scripts are the change: " + scripts_message(self.scripts),
                        scripts=list(self.scripts), applied="scripts" if ok else "scripts-failed")
        await self.step(Step.PERSIST, StepStatus.SKIPPED, "scripts-only profile")
        if verifier is None:
            await self.step(Step.VERIFY_NEW, StepStatus.SKIPPED, "no verifier configured (--verify-with)")
            if not ok:
                await self.drop_candidate()
                return await self.finish(Outcome.FAILED, f"{scripts_message(self.scripts)}; the old "
                                                         f"secret stays "
                                         f"current; see `keyturn rotation log {self.rid[:12]}`")
            return await self._commit_noop(Outcome.ROTATED_UNVERIFIABLE, "scripts succeeded; no verifier "
                                           "configured, so the new secret is not verified")
        check = await e.check(verifier, account, new, attempts)
        verdict = check.verdict
        if verdict is Verdict.INCONCLUSIVE:
            await self.step(Step.VERIFY_NEW, StepStatus.UNKNOWN, "could not verify the new secret"
                            + (f" ({check.detail})" if check.detail else ""))
            return await self.finish(Outcome.UNVERIFIED, "device state unknown after the scripts ran; both "
                                     "secrets kept, `keyturn recover` will probe and finish")
        if verdict is Verdict.OK:
            self.verified_by = check.proof.value
            await self.step(Step.VERIFY_NEW, StepStatus.OK, f"new secret verified {proved(check)}")
            if ok:
                return await self._commit_noop(Outcome.ROTATED, "scripts succeeded and the new secret "
                                                                "verified")
            # The device has the new secret: the vault must follow it or the credential is lost.
            return await self._commit_noop(Outcome.NEEDS_ATTENTION, f"{scripts_message(self.scripts)}, "
                                                                    f"yet the "
                                           "new secret logs in; the vault follows the device — check "
                                           "the scripts")
        await self.step(Step.VERIFY_NEW, StepStatus.FAILED, "the device rejected the new secret")
        old_ok = old is not None and await e.verify(verifier, account, old, attempts) is Verdict.OK
        if old_ok:
            await self.drop_candidate()
            why = (scripts_message(self.scripts) if not ok
                   else "the scripts exited 0 but the device did not take the new secret")
            return await self.finish(Outcome.FAILED, f"{why}; the old secret still works and stays current")
        return await self.finish(Outcome.NEEDS_ATTENTION, "neither the new nor the old secret logs in "
                                                          "after the "
                                 "scripts ran; both kept, a person must look")

    async def _commit_noop(self, outcome: Outcome, reason: str) -> RotationResult:
        assert self.version is not None
        version = self.version

        def commit() -> None:
            self.e.vault.promote(self.uid, version)
            self.queue(Step.COMMIT, StepStatus.OK, f"version {version} is current", {})

        await self.flush(commit, then=Step.COMMIT)
        self.note(Step.SCRIPTS, StepStatus.SKIPPED, "the scripts ran as the change (step 5)")
        return await self.finish(outcome, reason)


__all__ = ["RotationEngine", "RotationProfile", "TargetPool", "can_verify", "describe"]
