"""`Scheduler`: runs each scheduled record's rotation when it is due.

What it guarantees (tests: `tests/unit/test_scheduler_*.py`):

* **Due order, bounded.** A heapq of due times, one entry per record; due rotations start in due order
  under a global limit (`concurrency`) and per-target-kind limits (`per_target`), so a restart with
  many overdue records never starts them all at once. A record is never dispatched while its previous
  rotation runs (the engine's account lock is the second line of defence).
* **Windows.** A rotation starts only inside its maintenance window; a start delayed past the window
  (queueing) moves to the next opening.
* **Failures.** Back-off `backoff_base * 2**(n-1)` capped at `backoff_cap`; after `max_attempts`
  failures in a row (or an engine outcome `needs_attention`) the record is flagged *needs attention*,
  persisted, and not retried until a successful manual rotation (seen in the journal on `reload`) or
  `keyturn schedule reset`.
* **Restart-safe.** Engine recovery runs first; state is durable (`keyturn.scheduler.state`): a
  rotation marked dispatched before a crash is settled from the journal, or dispatched again if it
  never started. Missed slots collapse into one run; a clock step backwards never re-runs a slot.
* **Time is injected** (`keyturn.scheduler.clock`): the loop only ever waits in `clock.sleep_until`.

Example (what `keyturn serve` does)::

    engine = RotationEngine(vault, actor="scheduler")
    scheduler = Scheduler(vault, engine.rotate, concurrency=8, per_target={"meraki-auth-user": 2})
    await scheduler.run(stop_event)       # engine.recover() runs first
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from keyturn.engine.outcome import Outcome, RotationResult, RotationState
from keyturn.errors import ConfigError, KeyturnError
from keyturn.scheduler.clock import Clock, SystemClock
from keyturn.scheduler.queue import DueQueue
from keyturn.scheduler.schedules import META_KEY, Schedule, ScheduleMemo, from_meta
from keyturn.scheduler.state import (
    JournalProbe,
    ScheduledRecord,
    ScheduleState,
    StateStore,
    mark_in,
    save_in,
)

if TYPE_CHECKING:
    from keyturn.vault import Vault

log = logging.getLogger("keyturn.scheduler")
T = TypeVar("T")
PROFILE_KEY = "rotation"


@dataclass(frozen=True, slots=True)
class Entry:
    """A record the scheduler serves: its schedule and the target kind (for per-target limits)."""

    uid: str
    title: str
    target: str
    schedule: Schedule


def entry_for(record: ScheduledRecord, *, parse: Callable[[Any], Schedule] = from_meta) -> Entry:
    """Validate a record's stored schedule; `ConfigError` saying why it cannot be scheduled. `parse`
    reads the stored schedule (a `ScheduleMemo.parse` when listing many)."""
    profile = record.meta.get(PROFILE_KEY)
    if not isinstance(profile, Mapping) or not isinstance(profile.get("target"), str):
        raise ConfigError(f"record {record.title!r} has no rotation profile; set one with "
                          f"`keyturn rotation set {record.uid} --target KIND ...`")
    return Entry(uid=record.uid, title=record.title, target=str(profile["target"]),
                 schedule=parse(record.meta.get(META_KEY)))


class Scheduler:
    """Dispatches due rotations to `rotate(uid)`; see the module docstring for the guarantees.

    `recover` runs once at start (default: `rotate.__self__.recover` when `rotate` is a bound
    `RotationEngine.rotate`). `refresh_every` (seconds of clock time) re-reads schedules periodically,
    for changes made by another process (CLI); `reload()` does it at once.
    """

    def __init__(
        self, vault: Vault, rotate: Callable[[str], Awaitable[RotationResult]], *, clock: Clock | None = None,
        concurrency: int = 16, per_target: Mapping[str, int] | None = None, max_attempts: int = 5,
        backoff_base: float = 60.0, backoff_cap: float = 6 * 3600,
        recover: Callable[[], Awaitable[Any]] | None = None, refresh_every: float | None = None,
    ) -> None:
        if concurrency < 1 or max_attempts < 1 or backoff_base <= 0 or backoff_cap < backoff_base:
            raise ConfigError("scheduler: concurrency and max_attempts must be >= 1, "
                              "0 < backoff_base <= backoff_cap")
        if per_target and any(n < 1 for n in per_target.values()):
            raise ConfigError("scheduler: per-target limits must be >= 1")
        self.store = StateStore(vault.engine)
        self.rotate = rotate
        self.clock: Clock = clock or SystemClock()
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.refresh_every = refresh_every
        if recover is None:
            owner_recover = getattr(getattr(rotate, "__self__", None), "recover", None)
            recover = owner_recover if callable(owner_recover) else None
        self._recover = recover
        self._global = asyncio.Semaphore(concurrency)
        self._limits = dict(per_target or {})
        self._target_sems: dict[str, asyncio.Semaphore] = {}
        self._records: dict[str, Entry] = {}
        self._states: dict[str, ScheduleState] = {}
        self.invalid: dict[str, str] = {}      # uid → why its schedule is not served
        self._queue = DueQueue()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._reload = True
        self._last_load: datetime | None = None
        self._sleeping = False
        self._sleeping_until: datetime | None = None
        self._db: ThreadPoolExecutor | None = None
        self._ended = False
        self._waiting = 0
        self._load_retry: datetime | None = None
        self._pending: list[tuple[Callable[[sa.Connection], None], asyncio.Future[None]]] = []
        self._flushing = False
        self._flusher: asyncio.Task[None] | None = None

    # --- public API ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve schedules until `stop` is set, then wait for in-flight rotations to finish.

        Cancelling `run` cancels in-flight rotations; they stay marked dispatched and the next start
        settles them (engine recovery + journal), so nothing is lost or run twice.
        """
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyturn-scheduler-db")
        self._ended = False
        try:
            if self._recover is not None:
                try:
                    await self._recover()
                except KeyturnError as exc:
                    # Safe to go on: the engine settles a record's open rotation before rotating it again.
                    log.error("recovery before scheduling failed: %s", exc)
            while not stop.is_set():
                self._wake.clear()
                if self._reload or self._refresh_due():
                    try:
                        await self._load()
                    except KeyturnError as exc:  # e.g. database briefly unavailable: keep the old view
                        self._reload, self._load_retry = True, self.clock.now() + timedelta(
                            seconds=self.backoff_base)
                        log.error("cannot read schedules (%s); retrying in %ss", exc, int(self.backoff_base))
                now = self.clock.now()
                while (item := self._queue.pop_due(now)) is not None:
                    self._tasks[item[0]] = asyncio.create_task(self._run_one(item[0]))
                await self._sleep(stop)
            if self._tasks:
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        finally:
            for task in list(self._tasks.values()):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            if self._flusher is not None:
                await asyncio.gather(self._flusher, return_exceptions=True)
            self._db.shutdown(wait=True)
            self._db = None
            self._ended = True
            await self._notify()

    def reload(self) -> None:
        """Re-read schedules and states (call after a schedule or profile changes, or a manual rotate).

        Call it from the scheduler's event loop thread (e.g. an API route); from another thread use
        ``loop.call_soon_threadsafe(scheduler.reload)``."""
        self._reload = True
        self._wake.set()

    def queue_depth(self) -> int:
        """Records waiting in the due-time queue (not counting rotations in flight)."""
        return len(self._queue)

    def backlog(self) -> int:
        """Rotations that are due but wait for a concurrency slot (global or per-target)."""
        return self._waiting

    def next_due(self) -> list[tuple[str, datetime]]:
        """(record uid, due time) of every queued record, earliest first."""
        return self._queue.items()

    def in_flight(self) -> list[str]:
        return sorted(self._tasks)

    def state(self, uid: str) -> ScheduleState | None:
        """The scheduler's live state of a served record (read it; do not mutate it)."""
        return self._states.get(uid)

    async def wait_idle(self) -> None:
        """Return once nothing is in flight and the loop waits for a future time, or `run` ended."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._ended or self._idle())

    # --- loop --------------------------------------------------------------------------------------

    def _idle(self) -> bool:
        return (self._sleeping and not self._tasks and not self._wake.is_set()
                and (self._sleeping_until is None or self._sleeping_until > self.clock.now()))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _refresh_due(self) -> bool:
        return (self.refresh_every is not None and self._last_load is not None
                and self.clock.now() >= self._last_load + timedelta(seconds=self.refresh_every))

    async def _sleep(self, stop: asyncio.Event) -> None:
        top = self._queue.peek()
        until = top[1] if top else None
        if self._reload and self._load_retry is not None:
            until = self._load_retry if until is None else min(until, self._load_retry)
        if self.refresh_every is not None and self._last_load is not None:
            refresh = self._last_load + timedelta(seconds=self.refresh_every)
            until = refresh if until is None else min(until, refresh)
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait()),
                                            asyncio.ensure_future(stop.wait())]
        if until is not None:
            waits.append(asyncio.ensure_future(self.clock.sleep_until(until)))
        self._sleeping, self._sleeping_until = True, until
        await self._notify()
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._sleeping = False
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _write(self, op: Callable[[sa.Connection], None]) -> None:
        """Run one state write durably. Writes issued while another is in progress are committed
        together in the next transaction (a burst of due records costs two transactions, not 2n)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((op, fut))
        if not self._flushing:
            self._flushing = True
            self._flusher = asyncio.create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._call(self.store.transact, [op for op, _ in batch])
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._flushing = False

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._db is not None, "Scheduler.run() is not running"
        return await asyncio.get_running_loop().run_in_executor(self._db, lambda: fn(*args))

    # --- loading -----------------------------------------------------------------------------------

    def _read(self) -> tuple[list[ScheduledRecord], dict[str, ScheduleState], dict[str, JournalProbe]]:
        records = self.store.scheduled_records(META_KEY)
        states = self.store.load_all()
        probes = {uid: self.store.probe(uid) for uid, st in states.items()
                  if uid not in self._tasks and (st.dispatched_at is not None or st.needs_attention)}
        return records, states, probes

    async def _load(self) -> None:
        if self._load_retry is not None and self.clock.now() < self._load_retry:
            return
        records, states, probes = await self._call(self._read)
        self._reload, self._load_retry = False, None
        now = self.clock.now()
        self._last_load = now
        entries: dict[str, Entry] = {}
        invalid: dict[str, str] = {}
        memo = ScheduleMemo(now)   # every reload re-reads every record: parse each distinct schedule once
        for rec in records:
            try:
                entries[rec.uid] = entry_for(rec, parse=memo.parse)
            except ConfigError as exc:
                invalid[rec.uid] = str(exc)
                log.warning("record %s is not scheduled: %s", rec.uid, exc)
        changed: list[ScheduleState] = []
        for uid, entry in entries.items():
            if uid in self._tasks:
                continue  # its task settles it, then asks for a reload if the schedule changed
            st = states.get(uid)
            if st is None or st.fingerprint != entry.schedule.fingerprint:
                st = self._fresh(entry, st, now)
                changed.append(st)
            elif st.dispatched_at is not None:
                self._reconcile(entry, st, probes[uid], now)
                changed.append(st)
            elif st.needs_attention and self._fixed_by_hand(st, probes[uid]):
                st.needs_attention, st.attention_reason, st.attempts = False, "", 0
                self._advance(entry, st, now)
                changed.append(st)
            elif st.next_due is None and not st.needs_attention:  # flag cleared by `schedule reset`
                self._advance(entry, st, now)
                changed.append(st)
            self._states[uid] = st
            if st.next_due is not None and not st.needs_attention:
                self._queue.push(uid, st.next_due)
            else:
                self._queue.remove(uid)
        for uid, _ in self._queue.items():
            if uid not in entries:
                self._queue.remove(uid)
        # A schedule that became invalid keeps its row (history, flag) until it is fixed or removed.
        gone = [uid for uid in states if uid not in entries and uid not in invalid and uid not in self._tasks]
        for uid in gone:
            self._states.pop(uid, None)
        self._records, self.invalid = entries, invalid
        if changed or gone:
            await self._call(self.store.save, changed, gone)

    def _fresh(self, entry: Entry, old: ScheduleState | None, now: datetime) -> ScheduleState:
        st = ScheduleState(record_uid=entry.uid, fingerprint=entry.schedule.fingerprint)
        if old is not None:  # keep history and a raised flag across a schedule change
            st.needs_attention, st.attention_reason = old.needs_attention, old.attention_reason
            st.last_run_at, st.last_outcome = old.last_run_at, old.last_outcome
            st.last_reason, st.last_rotation_id = old.last_reason, old.last_rotation_id
            st.rotations_seen = old.rotations_seen
        self._advance(entry, st, now)
        return st

    @staticmethod
    def _fixed_by_hand(st: ScheduleState, probe: JournalProbe) -> bool:
        return (probe.latest_id is not None and probe.latest_id != st.last_rotation_id
                and probe.latest_outcome in (Outcome.ROTATED.value, Outcome.ROTATED_UNVERIFIABLE.value))

    def _reconcile(self, entry: Entry, st: ScheduleState, probe: JournalProbe, now: datetime) -> None:
        """A rotation was marked dispatched when the previous process stopped."""
        started = st.dispatched_at or now
        if probe.count > st.rotations_seen and probe.latest_id is not None:
            # It started: recovery (run first) settled it; its outcome serves this slot.
            try:
                outcome = Outcome(probe.latest_outcome or "")
            except ValueError:
                outcome = Outcome.UNVERIFIED
            if probe.latest_state == RotationState.RUNNING.value:
                outcome = Outcome.UNVERIFIED
            log.info("record %s: rotation %s from before the restart ended %s", entry.uid,
                     probe.latest_id, outcome.value)
            self._settle(entry, st, outcome, probe.latest_reason or "settled after a restart",
                         probe.latest_id, started, now)
        else:
            # It never reached the engine: the same slot is dispatched again (not lost, not doubled).
            log.info("record %s: dispatched before the restart but never started; dispatching again",
                     entry.uid)
            st.dispatched_at = None
            st.next_due = now

    # --- one rotation -------------------------------------------------------------------------------

    def _target_sem(self, kind: str) -> asyncio.Semaphore | None:
        if kind not in self._limits:
            return None
        if kind not in self._target_sems:
            self._target_sems[kind] = asyncio.Semaphore(self._limits[kind])
        return self._target_sems[kind]

    async def _run_one(self, uid: str) -> None:
        entry, st = self._records.get(uid), self._states.get(uid)
        waiting = False
        try:
            if entry is None or st is None:
                return
            # Target limit first: a task waiting for a busy target must not hold a global slot.
            self._waiting += 1
            waiting = True
            async with self._target_sem(entry.target) or contextlib.nullcontext(), self._global:
                self._waiting -= 1
                waiting = False
                now = self.clock.now()
                if entry.schedule.window is not None and not entry.schedule.window.contains(now):
                    st.next_due = entry.schedule.earliest(now)
                    log.info("record %s: missed its window while queued; next opening %s", uid,
                             st.next_due.isoformat())
                    await self._write(functools.partial(save_in, states=[st]))
                    return
                await self._write(functools.partial(mark_in, st=st, at=now))
                try:
                    result = await self.rotate(uid)
                    outcome, reason, rid = result.outcome, result.reason, result.rotation_id
                except Exception as exc:  # a crashing rotate must not stop the scheduler
                    # A bug's message may hold anything: log only its type (traceback at debug level).
                    log.error("record %s: rotate raised %s", uid, type(exc).__name__)
                    log.debug("rotate traceback", exc_info=True)
                    outcome, reason, rid = Outcome.FAILED, f"rotation raised {type(exc).__name__}", None
                self._settle(entry, st, outcome, reason, rid, now, self.clock.now())
                await self._write(functools.partial(save_in, states=[st]))
        except KeyturnError as exc:  # the state store failed: keep serving, try this record later
            log.error("record %s: scheduler state not saved (%s); retrying in %ss", uid, exc,
                      int(self.backoff_base))
            if st is not None and st.dispatched_at is not None:  # failed before the outcome was known
                st.dispatched_at = None
                st.next_due = self.clock.now() + timedelta(seconds=self.backoff_base)
        finally:
            if waiting:
                self._waiting -= 1
            self._tasks.pop(uid, None)
            current = self._records.get(uid)
            if current is None or st is None or current.schedule.fingerprint != st.fingerprint:
                self._reload = True  # schedule removed or changed meanwhile: let _load sort it out
            elif st.next_due is not None and not st.needs_attention and st.dispatched_at is None:
                self._queue.push(uid, st.next_due)
            self._wake.set()
            await self._notify()

    def _settle(self, entry: Entry, st: ScheduleState, outcome: Outcome, reason: str, rid: str | None,
                started: datetime, finished: datetime) -> None:
        st.dispatched_at = None
        st.last_run_at, st.last_outcome, st.last_reason = started, outcome.value, reason[:1000]
        st.last_rotation_id = rid
        if outcome.rotated:
            st.attempts, st.needs_attention, st.attention_reason = 0, False, ""
            after = max(st.slot or started, started)
            if st.deferred:
                after = max(after, entry.schedule.absorb_until(started))
            self._advance(entry, st, after)
            log.info("record %s: %s; next due %s", entry.uid, outcome.value,
                     st.next_due.isoformat() if st.next_due else "-")
            return
        st.attempts += 1
        if outcome is Outcome.NEEDS_ATTENTION or st.attempts >= self.max_attempts:
            st.needs_attention = True
            st.attention_reason = (reason if outcome is Outcome.NEEDS_ATTENTION
                                   else f"{st.attempts} failed attempts; last: {reason}")[:1000]
            st.next_due = None
            log.warning("record %s needs attention: %s", entry.uid, st.attention_reason)
            return
        delay = min(self.backoff_base * 2 ** (st.attempts - 1), self.backoff_cap)
        st.next_due = entry.schedule.earliest(finished + timedelta(seconds=delay))
        log.info("record %s: %s (attempt %d of %d); retrying at %s", entry.uid, outcome.value,
                 st.attempts, self.max_attempts, st.next_due.isoformat())

    @staticmethod
    def _advance(entry: Entry, st: ScheduleState, after: datetime) -> None:
        st.slot = entry.schedule.next_slot(after)
        st.next_due, st.deferred = entry.schedule.due(st.slot, entry.uid)
