"""What a worker process does with one request: claim it, settle what a dead worker left, rotate, record.

    runtime = WorkerRuntime(vault, engine, settings, slots=DeviceSlots(...))
    status = await runtime.run(request_id)      # never raises for rotation trouble

One request → at most `worker_attempts` rotations, each with its own rotation id (the first one's is the
request id), recorded in the ledger *before* it starts, so a redelivery after a crash resumes the same
rotation instead of starting a second one:

1. claim (`RequestLedger.claim`): a final request, or one a live worker (this one included) holds, is a
   duplicate delivery — acknowledged and left alone (idempotent by request id). A request delivered more than
   `worker_max_deliveries` times (its worker died each time) ends `needs_attention` without running.
2. the current attempt's rotation already in the journal (its worker died mid-rotation): recovery
   settles the account first — forward or back, under the account lock, holding the device's slot
   like a rotation (its probes are sessions too) — and its outcome is the attempt's outcome; a
   rotation another live process still runs is left to it. No slot: a failed attempt, and the next
   one tries to settle the same rotation.
3. otherwise rotate, holding the device's shared slot (`DeviceSlots`, across every worker) for
   IOS XE targets; Meraki is paced by the shared per-organisation budget instead. No slot (Redis
   unreachable, the device busy past the wait) is a failed attempt that changed nothing.
4. an attempt that failed with nothing changed is tried again after a back-off (doubling), up to
   `worker_attempts`; the last failure ends the request `needs_attention` (a poison account never
   blocks its queue: the other threads of the worker go on).
5. the request's one outcome is written (`complete`; a final request is never rewritten), and audited
   once, by the delivery that wrote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from keyturn.dispatch.ledger import Request, RequestLedger
from keyturn.engine.outcome import Outcome, RotationResult, RotationState
from keyturn.engine.rotate import RotationEngine
from keyturn.engine.steps import describe
from keyturn.errors import KeyturnError, LimitError

if TYPE_CHECKING:
    from keyturn.config import Settings
    from keyturn.engine.journal import RotationRow

log = logging.getLogger("keyturn.worker")

# Cloud APIs paced by their per-organisation budget, not a per-device session limit (as engine.batch).
_BUDGETED_PREFIXES = ("meraki",)


class Slots(Protocol):
    """Per-device concurrency shared by every worker (`keyturn.engine.shared_limits.DeviceSlots`)."""

    def hold(self, device: str, *, wait: float = ...) -> contextlib.AbstractAsyncContextManager[None]: ...


class WorkerRuntime:
    """Runs requests on one engine (one per worker process; many requests in flight on its loop)."""

    def __init__(self, engine: RotationEngine, settings: Settings, *, slots: Slots | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.engine = engine
        self.settings = settings
        self.ledger = RequestLedger(engine.vault.engine)
        self.slots = slots
        self.sleep = sleep
        self.in_flight = 0
        self._running: set[str] = set()

    async def run(self, rid: str) -> str:
        """Handle one delivery of request `rid`; returns what happened (for the worker's log)."""
        if rid in self._running:
            # Redelivered to this very process while it still runs it (its broker connection dropped
            # and came back): the run in progress gives the outcome.
            return "duplicate"
        self._running.add(rid)
        self.in_flight += 1
        try:
            return await self._run(rid)
        finally:
            self.in_flight -= 1
            self._running.discard(rid)

    async def _run(self, rid: str) -> str:
        e = self.engine
        claim = await e.db(self.ledger.claim, rid)
        req = claim.request
        if req is None:
            log.warning("request %s is not in the ledger (from another vault?); dropped", rid[:12])
            return "unknown"
        if not claim.mine:
            return "duplicate"
        if req.deliveries > self.settings.worker_max_deliveries:
            result = RotationResult(
                record_uid=req.record_uid, title=req.title, target="", outcome=Outcome.NEEDS_ATTENTION,
                rotation_id=req.rotation_id,
                reason=f"the worker running this rotation was lost {req.deliveries - 1} times; not tried "
                       f"again — see `keyturn rotation log {req.rotation_id[:12]}` and `keyturn recover`")
            await self._complete(req, result)
            return "poison"
        try:
            result = await self._attempts(req)
        except _Elsewhere:
            # A live process (the worker first given it, a CLI) is still on the rotation: hand the claim
            # back so that process's completion, or the next delivery if it dies, settles the request.
            await e.db(self.ledger.release, rid)
            return "in flight elsewhere"
        except Exception as exc:  # a bug must not leave the request running forever
            log.exception("request %s stopped on an unexpected error", rid[:12])
            result = RotationResult(record_uid=req.record_uid, title=req.title, target="",
                                    outcome=Outcome.FAILED, reason=describe(exc), rotation_id=req.rotation_id)
        await self._complete(req, result)
        return str(result.outcome)

    async def _attempts(self, req: Request) -> RotationResult:
        e = self.engine
        attempts = max(1, self.settings.worker_attempts)
        attempt = max(1, req.attempts)
        rotation_id = req.rotation_id or req.id
        reasons: list[str] = []
        while True:
            if req.attempts < attempt:
                await e.db(self.ledger.next_attempt, req.id, rotation_id, attempt)
            settled = True
            try:
                result = await self._resume(req, rotation_id)
            except _NoSlot as exc:
                # The interrupted rotation could not be probed: it stays open, and the next attempt
                # tries to settle the same rotation rather than start another.
                settled = False
                result = RotationResult(record_uid=req.record_uid, title=req.title, target="",
                                        outcome=Outcome.FAILED, rotation_id=rotation_id,
                                        reason=f"{exc}; the interrupted rotation {rotation_id[:12]} was "
                                               "not settled and stays open")
            if result is None:
                result = await self._rotate(req, rotation_id)
            if result.outcome is not Outcome.FAILED:
                return result
            reasons.append(result.reason)
            if attempt >= attempts:
                if attempts == 1:
                    return result
                return RotationResult(
                    record_uid=result.record_uid or req.record_uid, title=result.title or req.title,
                    target=result.target, outcome=Outcome.NEEDS_ATTENTION, rotation_id=result.rotation_id,
                    duration=result.duration,
                    reason=f"failed {attempt} attempts, nothing was changed; last: {reasons[-1]}")
            await self.sleep(self.settings.worker_retry_backoff * 2 ** (attempt - 1))
            attempt += 1
            if settled:
                rotation_id = uuid.uuid4().hex

    async def _resume(self, req: Request, rotation_id: str) -> RotationResult | None:
        """The outcome of a rotation this request already started (a redelivery), settling it first when
        its worker died; None when it never started. Raises `_Elsewhere` when a live process has it."""
        e = self.engine
        row = await e.db(e.journal.get, rotation_id)
        if row is None:
            return None
        if row.is_open:
            from keyturn.engine.recovery import Recovery

            # Recovery probes the device (old and candidate secrets): it takes the device's slot like
            # a rotation, or it would be one session too many on a device with a session limit.
            device = await e.db(_device_key, e, row.record_uid)
            holding = False
            try:
                async with self._slot(device):
                    holding = True
                    await Recovery(e).recover_record(row.record_uid)
            except LimitError as exc:
                if holding:
                    raise
                raise _NoSlot(str(exc)) from exc
            row = await e.db(e.journal.get, rotation_id)
            assert row is not None
            if row.is_open and row.state is RotationState.RUNNING:
                raise _Elsewhere(rotation_id)
        return _result_of(row)

    async def _rotate(self, req: Request, rotation_id: str) -> RotationResult:
        device = await self.engine.db(_device_key, self.engine, req.record_uid)
        holding = False
        try:
            async with self._slot(device):
                holding = True
                return await self.engine.rotate(req.record_uid, rotation_id=rotation_id)
        except LimitError as exc:
            if holding:
                raise
            # No slot (Redis down, the device busy past the wait): an attempt that changed nothing.
            return RotationResult(record_uid=req.record_uid, title=req.title, target="",
                                  outcome=Outcome.FAILED, reason=f"{exc}; nothing was changed",
                                  rotation_id=rotation_id)

    @contextlib.asynccontextmanager
    async def _slot(self, device: str | None) -> AsyncIterator[None]:
        if self.slots is None or device is None:
            yield
            return
        async with self.slots.hold(device):
            yield

    async def _complete(self, req: Request, result: RotationResult) -> None:
        e = self.engine
        if not await e.db(self.ledger.complete, req.id, result):
            return              # another delivery wrote the outcome first: one outcome, one audit entry
        await e.db(e.vault.audit.append, "rotation.request", actor=e.actor, record_uid=req.record_uid,
                   details={"request_id": req.id, "rotation_id": result.rotation_id, "site": req.site,
                            "outcome": result.outcome.value, "deliveries": req.deliveries})


class _Elsewhere(KeyturnError):
    """A live process (another worker, a CLI) is still on this rotation: leave the request to it."""


class _NoSlot(KeyturnError):
    """No device slot to settle an interrupted rotation with (Redis down, the device busy)."""


def _result_of(row: RotationRow) -> RotationResult:
    return RotationResult(record_uid=row.record_uid, title=row.title, target=row.target,
                          outcome=row.outcome or Outcome.UNVERIFIED, reason=row.reason, rotation_id=row.id,
                          duration=row.duration, scripts=row.scripts)


def _device_key(engine: RotationEngine, uid: str) -> str | None:
    """The resource uid whose shared slot a rotation of `uid` holds; None for budget-paced targets."""
    try:
        _uid, meta = engine.vault.meta(uid)
    except KeyturnError:
        return None
    profile: Any = meta.get("rotation")
    if not isinstance(profile, dict):
        return None
    kind = str(profile.get("verify_with") or profile.get("target") or "")
    resource = profile.get("resource")
    if resource is None or kind.startswith(_BUDGETED_PREFIXES):
        return None
    return str(resource)


__all__ = ["Slots", "WorkerRuntime"]
