"""Helpers for scheduler tests: a real vault with scheduled records, a recording fake `rotate`
(the world outside the scheduler, not a fake of keyturn), and a driver that moves a `FakeClock`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyturn.engine.journal import Journal
from keyturn.engine.outcome import Outcome, RotationResult
from keyturn.scheduler import FakeClock, Scheduler, parse_schedule
from keyturn.vault import NewRecord, Vault


def add_scheduled(vault: Vault, specs: Sequence[Mapping[str, Any]], *, target: str = "noop",
                  targets: Sequence[str] | None = None) -> list[str]:
    """One pamUser per spec: {"spec", "tz"?, "window"?, "jitter"?, "anchor"?}, stored as
    `keyturn schedule set` stores it (validated by `parse_schedule`). Returns uids in order."""
    news = []
    for i, spec in enumerate(specs):
        sched = parse_schedule(spec["spec"], tz=spec.get("tz"), window=spec.get("window"),
                               jitter=spec.get("jitter"), anchor=spec.get("anchor"))
        news.append(NewRecord(type="pamUser", title=f"user {uuid.uuid4().hex[:8]} {i:04d}",
                              meta={"rotation": {"target": targets[i] if targets else target},
                                    "schedule": sched.to_meta()}))
    return vault.add_many(news)


@dataclass
class FakeRotate:
    """Records (uid, clock time) per call; outcomes scripted per uid (default rotated).

    With `journal`, each call writes a rotation row like the engine does (restart tests). With
    `gate`, calls block until the gate is set (concurrency / crash tests)."""

    clock: FakeClock
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    journal: Journal | None = None
    gate: asyncio.Event | None = None
    targets: Mapping[str, str] = field(default_factory=dict)
    calls: list[tuple[str, datetime]] = field(default_factory=list)
    active: dict[str, int] = field(default_factory=dict)
    max_active: dict[str, int] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def __call__(self, uid: str) -> RotationResult:
        self.calls.append((uid, self.clock.now()))
        kind = self.targets.get(uid, "noop")
        for key in ("*", kind):
            self.active[key] = self.active.get(key, 0) + 1
            self.max_active[key] = max(self.max_active.get(key, 0), self.active[key])
        rid = uuid.uuid4().hex
        try:
            if self.journal is not None:
                self.journal.start(rotation_id=rid, record_uid=uid, title=uid, target=kind, lock_key=uid)
            self.started.set()
            async with self.changed:
                self.changed.notify_all()
            if self.gate is not None:
                await self.gate.wait()
            script = self.outcomes.get(uid)
            outcome = script.pop(0) if script else Outcome.ROTATED
            if self.journal is not None:
                self.journal.finish(rid, outcome, "fake")
            return RotationResult(record_uid=uid, title=uid, target=kind, outcome=outcome, reason="fake",
                                  rotation_id=rid)
        finally:
            for key in ("*", kind):
                self.active[key] -= 1

    async def wait_active(self, n: int) -> None:
        """Until `n` calls are in progress at once."""
        async with asyncio.timeout(30), self.changed:
            await self.changed.wait_for(lambda: self.active.get("*", 0) >= n)

    def times(self, uid: str) -> list[datetime]:
        return [t for u, t in self.calls if u == uid]


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[asyncio.Task[None]]:
    """Run the scheduler in a task; stop it (and wait for it) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        async with asyncio.timeout(60):
            await scheduler.wait_idle()
        yield task
    finally:
        stop.set()
        if not task.done():
            async with asyncio.timeout(60):
                await task


async def advance_to(scheduler: Scheduler, clock: FakeClock, until: datetime) -> None:
    """Move the clock to `until` one wake-up at a time, letting the scheduler settle at each."""
    async with asyncio.timeout(600):
        await scheduler.wait_idle()
        while (nxt := clock.next_wakeup()) is not None and nxt <= until:
            clock.set(nxt)
            await scheduler.wait_idle()
        if clock.now() < until:
            clock.set(until)
        await scheduler.wait_idle()
