"""Restart safety from durable state: a rotation in flight when the service died is settled from the
journal (never run twice), one that never reached the engine is dispatched again (never lost), and a
plain stop/start keeps the schedule grid. Plus the real engine behind the scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keyturn.config import Settings
from keyturn.engine.journal import Journal
from keyturn.engine.outcome import Outcome
from keyturn.scheduler import FakeClock, Scheduler, parse_schedule
from keyturn.scheduler.state import StateStore
from keyturn.vault import Vault
from tests.pg import pg_schema_url
from tests.unit.engine_world import OLD, World, open_world
from tests.unit.scheduler_world import FakeRotate, add_scheduled, advance_to, running

T0 = datetime(2026, 1, 5, tzinfo=UTC)
DUE = T0 + timedelta(days=1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def vault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Vault]:
    """The same durable-state tests on SQLite and on PostgreSQL (a fresh schema per test)."""
    if request.param == "sqlite":
        with Vault.init(Settings(home=tmp_path)) as v:
            yield v
        return
    with pg_schema_url("kt_sched") as url, Vault.init(Settings(home=tmp_path, database_url=url)) as v:
        yield v


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from open_world(tmp_path)


async def kill_mid_rotation(vault: Vault, clock: FakeClock, *, journal: Journal | None) -> str:
    """Run a scheduler until the record's first rotation is in flight, then kill it (cancel)."""
    [uid] = add_scheduled(vault, [{"spec": "every 1d", "anchor": T0}])
    rotate = FakeRotate(clock, gate=asyncio.Event(), journal=journal)
    sched = Scheduler(vault, rotate, clock=clock)
    task = asyncio.create_task(sched.run(asyncio.Event()))
    await sched.wait_idle()
    clock.set(DUE)
    await rotate.wait_active(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    st = StateStore(vault.engine).get(uid)
    assert st is not None and st.dispatched_at == DUE  # marked durably before the rotation started
    return uid


async def test_in_flight_rotation_is_settled_by_recovery_not_rerun(vault: Vault) -> None:
    clock = FakeClock(T0)
    journal = Journal(vault.engine)
    uid = await kill_mid_rotation(vault, clock, journal=journal)
    [open_rotation] = journal.open_rotations(uid)
    clock.set(DUE + timedelta(minutes=5))
    recovered: list[str] = []

    async def recover() -> None:  # what engine recovery does: probe the device, finish the rotation
        journal.finish(open_rotation.id, Outcome.ROTATED, "recovered forward")
        recovered.append(open_rotation.id)

    rotate = FakeRotate(clock, journal=journal)
    sched = Scheduler(vault, rotate, clock=clock, recover=recover)
    async with running(sched):
        assert recovered == [open_rotation.id]
        await advance_to(sched, clock, DUE + timedelta(hours=23))
        assert rotate.calls == []                                  # not doubled
        await advance_to(sched, clock, DUE + timedelta(days=1, hours=1))
    assert rotate.times(uid) == [DUE + timedelta(days=1)]          # and the grid goes on
    st = StateStore(vault.engine).get(uid)
    assert st is not None and st.dispatched_at is None


async def test_in_flight_rotation_left_unverified_is_retried_with_backoff(vault: Vault) -> None:
    clock = FakeClock(T0)
    journal = Journal(vault.engine)
    uid = await kill_mid_rotation(vault, clock, journal=journal)
    clock.set(DUE + timedelta(minutes=5))
    rotate = FakeRotate(clock, journal=journal)
    sched = Scheduler(vault, rotate, clock=clock, backoff_base=600, recover=None)
    async with running(sched):
        st = sched.state(uid)
        assert st is not None and st.last_outcome == "unverified" and st.attempts == 1
        await advance_to(sched, clock, DUE + timedelta(hours=1))
    assert rotate.times(uid) == [DUE + timedelta(minutes=15)]


async def test_dispatch_that_never_reached_the_engine_is_not_lost(vault: Vault) -> None:
    clock = FakeClock(T0)
    uid = await kill_mid_rotation(vault, clock, journal=None)     # no journal row: it never started
    restart = DUE + timedelta(minutes=5)
    clock.set(restart)
    rotate = FakeRotate(clock)
    sched = Scheduler(vault, rotate, clock=clock)
    async with running(sched):
        await advance_to(sched, clock, DUE + timedelta(days=1, hours=1))
    assert rotate.times(uid) == [restart, DUE + timedelta(days=1)]


async def test_stop_and_start_keeps_the_grid(vault: Vault) -> None:
    specs: list[dict[str, object]] = [
        {"spec": "every 7h", "anchor": T0}, {"spec": "0 */5 * * *", "jitter": "1h"},
        {"spec": "every 1d", "anchor": T0, "window": "Mon-Fri 22:00-02:00"}]
    uids = add_scheduled(vault, specs)
    clock = FakeClock(T0)
    continuous = FakeRotate(clock)

    async def run_for(rotate: FakeRotate, until: datetime) -> None:
        sched = Scheduler(vault, rotate, clock=clock)
        async with running(sched):
            await advance_to(sched, clock, until)

    # Reference: one process for 10 days ...
    await run_for(continuous, T0 + timedelta(days=10))
    reference = list(continuous.calls)
    # ... against a second vault state run as 4 separate processes over the same 10 days.
    for uid in uids:
        vault.set_meta(uid, "schedule", None)
    restarted_uids = add_scheduled(vault, specs)
    rename = dict(zip(restarted_uids, uids, strict=True))
    clock.set(T0)
    pieces = FakeRotate(clock)
    for day in (2, 5, 8, 10):
        await run_for(pieces, T0 + timedelta(days=day))
    jitter_free = [(u, t) for u, t in reference if u != uids[1]]
    assert [(rename[u], t) for u, t in pieces.calls if rename[u] != uids[1]] == jitter_free
    assert len(pieces.times(restarted_uids[1])) == len(continuous.times(uids[1])) == 49


async def test_real_engine_behind_the_scheduler(world: World) -> None:
    vault = world.vault
    vault.set_meta(world.user, "schedule", parse_schedule("every 1d", anchor=T0).to_meta())
    engine = world.engine()
    clock = FakeClock(T0)
    sched = Scheduler(vault, engine.rotate, clock=clock)   # engine.recover() runs first
    try:
        async with running(sched):
            await advance_to(sched, clock, T0 + timedelta(days=3, hours=1))
    finally:
        await engine.aclose()
    rotations = Journal(vault.engine).for_record(world.user)
    assert [r.outcome for r in rotations] == [Outcome.ROTATED] * 3
    device: dict[str, Any] = world.dev.load()
    assert device["users"]["netops"] == world.current() != OLD   # the device and the vault agree
    st = StateStore(vault.engine).get(world.user)
    assert st is not None and st.last_rotation_id == rotations[0].id and st.next_due == T0 + timedelta(days=4)
