"""Background rotations for the API and the scheduler: bounded concurrency, ids known up front.

`RotationRunner.submit(uid, actor=...)` returns at once with a `Job` whose id is the rotation id the
API answers 202 with; the engine journals the rotation under that same id. `rotate(uid)` runs one
rotation in the caller's task (the scheduler's dispatch callable)
under the same limits and metrics.

Limits: at most `concurrency` rotations in flight, at most `per_device` on one resource (IOS XE
serialises configuration sessions). One engine per audit actor, created lazily and closed by `aclose`.

Shutdown (`drain`): queued jobs are not started (they are reported ``cancelled``: nothing was touched,
and each is journaled as a failed rotation under its id, so `GET /rotations/{id}` still answers after
a restart and the caller knows to ask again);
running ones get `grace` seconds to finish; the rest are cancelled mid-flight, which is safe by design —
the journal row stays open and the candidate stays pending, so recovery on the next start finishes it
forward or backward.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from keyturn.api.metrics import Metrics
from keyturn.engine.outcome import Outcome, RotationResult
from keyturn.engine.steps import describe

log = logging.getLogger("keyturn.api.jobs")
MAX_FINISHED_JOBS = 10_000
CANCELLED_REASON = ("cancelled: keyturn stopped before this rotation started; nothing was changed — "
                    "request it again")


class EngineLike(Protocol):
    async def rotate(self, ref: str, *, rotation_id: str | None = None) -> RotationResult: ...
    async def aclose(self) -> None: ...
    @property
    def vault(self) -> Any: ...


EngineFactory = Callable[[str], EngineLike]


@dataclass
class Job:
    """One accepted rotation request (in-memory; the journal is the durable record)."""

    id: str
    record_uid: str
    title: str
    actor: str
    resource: str
    state: str = "queued"                 # queued → running → done | cancelled | parked
    rotation_id: str | None = None        # the journal's id (== id when the engine takes ours)
    submitted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: RotationResult | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "record_uid": self.record_uid, "title": self.title, "state": self.state,
            "rotation_id": self.rotation_id, "submitted_at": self.submitted_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "outcome": str(self.result.outcome) if self.result else None,
            "reason": self.result.reason if self.result else None,
        }


class RotationRunner:
    """Runs rotations in background tasks on the current event loop (see module docstring)."""

    def __init__(self, engine_factory: EngineFactory, *, concurrency: int = 16, per_device: int = 1,
                 metrics: Metrics | None = None) -> None:
        if concurrency < 1 or per_device < 1:
            raise ValueError("concurrency and per_device must be at least 1")
        self._factory = engine_factory
        self._engines: dict[str, EngineLike] = {}
        self._concurrency = concurrency
        self._per_device = per_device
        self._overall: asyncio.Semaphore | None = None
        self._devices: dict[str, asyncio.Semaphore] = {}
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._queued = 0
        self._running = 0
        self._accepting = True
        self.metrics = metrics

    # --- introspection -------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._queued

    @property
    def in_flight(self) -> int:
        return self._running

    @property
    def accepting(self) -> bool:
        return self._accepting

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def engine(self, actor: str) -> EngineLike:
        found = self._engines.get(actor)
        if found is None:
            found = self._engines[actor] = self._factory(actor)
        return found

    # --- running -------------------------------------------------------------------------------------

    def submit(self, record_uid: str, *, title: str, actor: str, resource: str | None = None) -> Job:
        """Accept a rotation of `record_uid`; it starts when a slot is free. Needs a running loop."""
        if not self._accepting:
            raise RuntimeError("the runner is shutting down")
        job = Job(id=uuid.uuid4().hex, record_uid=record_uid, title=title, actor=actor,
                  resource=resource or record_uid)
        self._remember(job)
        self._queued += 1
        self._tasks[job.id] = asyncio.create_task(self._run_job(job), name=f"rotation-{job.id[:12]}")
        return job

    async def rotate(self, record_uid: str, *, actor: str = "scheduler", resource: str | None = None
                     ) -> RotationResult:
        """Rotate now in the caller's task (same limits and metrics); never raises for rotation trouble."""
        job = Job(id=uuid.uuid4().hex, record_uid=record_uid, title=record_uid, actor=actor,
                  resource=resource or record_uid)
        self._queued += 1
        await self._run_job(job)
        assert job.result is not None
        return job.result

    async def _run_job(self, job: Job) -> None:
        overall = self._overall or asyncio.Semaphore(self._concurrency)
        self._overall = overall
        device = self._devices.setdefault(job.resource, asyncio.Semaphore(self._per_device))
        started = False
        try:
            async with overall, device:
                self._queued -= 1
                started = True
                if not self._accepting and job.id in self._tasks:
                    job.state = "cancelled"
                    return
                job.state, job.started_at = "running", datetime.now(UTC)
                self._running += 1
                try:
                    job.result = await self._rotate(job)
                finally:
                    self._running -= 1
            job.rotation_id = job.result.rotation_id or job.rotation_id
            job.state = "done"
        finally:
            if not started:
                self._queued -= 1
                job.state = "cancelled"
            elif job.state == "running":  # cancelled mid-flight: recovery finishes it on the next start
                job.state = "parked"
            job.finished_at = datetime.now(UTC)
            self._tasks.pop(job.id, None)

    async def _rotate(self, job: Job) -> RotationResult:
        engine = self.engine(job.actor)
        t0 = time.monotonic()
        try:
            job.rotation_id = job.id
            result = await engine.rotate(job.record_uid, rotation_id=job.id)
        except Exception as exc:  # a bug in one rotation must not kill the runner
            log.exception("rotation of %s stopped on an unexpected error", job.record_uid,
                          extra={"record_uid": job.record_uid, "request_id": job.id})
            result = RotationResult(record_uid=job.record_uid, title=job.title, target="",
                                    outcome=Outcome.FAILED, reason=describe(exc))
        if self.metrics is not None:
            self.metrics.observe_rotation(result.target, time.monotonic() - t0)
        log.info("rotation %s: %s", result.outcome, result.reason,
                 extra={"record_uid": result.record_uid or job.record_uid, "rotation_id": result.rotation_id,
                        "request_id": job.id, "target": result.target, "outcome": str(result.outcome),
                        "actor": job.actor})
        return result

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        while len(self._jobs) > MAX_FINISHED_JOBS:
            oldest = next(iter(self._jobs))
            if self._jobs[oldest].state in ("queued", "running"):
                break
            self._jobs.popitem(last=False)

    # --- shutdown ------------------------------------------------------------------------------------

    async def drain(self, grace: float) -> tuple[int, int]:
        """Stop accepting; let running rotations finish within `grace` seconds, cancel the rest.

        Returns (finished, parked): how many running rotations finished in time, and how many were
        cancelled mid-flight and left for recovery. Queued jobs are cancelled without starting.
        """
        self._accepting = False
        tasks = list(self._tasks.items())
        running = [t for jid, t in tasks if (j := self._jobs.get(jid)) is not None and j.state == "running"]
        pending = [t for _, t in tasks]
        if not pending:
            return 0, 0
        _done, still = await asyncio.wait(pending, timeout=max(0.0, grace))
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
        parked = sum(1 for t in running if t in still)
        cancelled = [j for jid, _ in tasks
                     if (j := self._jobs.get(jid)) is not None and j.state == "cancelled"]
        if cancelled:
            try:
                await asyncio.to_thread(self._journal_cancelled, cancelled)
            except Exception:  # the shutdown report must still come out
                log.warning("could not journal %d cancelled rotation(s)", len(cancelled), exc_info=True)
        for jid, task in tasks:
            job = self._jobs.get(jid)
            if job is not None and task in still:
                log.warning("rotation parked at shutdown; recovery finishes it on the next start",
                            extra={"record_uid": job.record_uid, "request_id": jid})
        return len(running) - parked, parked

    def _journal_cancelled(self, jobs: list[Job]) -> None:
        """One transaction: a finished `failed` journal row and an audit entry per cancelled job."""
        from keyturn.engine.journal import Journal

        vault = self.engine(jobs[0].actor).vault
        journal = Journal(vault.engine)
        with vault.unit():
            for job in jobs:
                journal.start(rotation_id=job.id, record_uid=job.record_uid, title=job.title, target="?",
                              lock_key="")
                journal.finish(job.id, Outcome.FAILED, CANCELLED_REASON)
                vault.audit.append("rotation.cancelled", actor=job.actor, record_uid=job.record_uid,
                                   details={"rotation_id": job.id, "reason": CANCELLED_REASON})

    async def aclose(self) -> None:
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            try:
                await engine.aclose()
            except Exception:  # closing must not hide the shutdown report
                log.warning("closing a rotation engine failed", exc_info=True)


__all__ = ["EngineFactory", "EngineLike", "Job", "RotationRunner"]
