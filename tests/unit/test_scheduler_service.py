"""Scheduler behaviour with a fake clock and a real vault: back-off and max attempts, needs-attention,
NTP steps, DST through the loop, concurrency limits, reload, restart from durable state."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.engine.journal import Journal
from keyturn.engine.outcome import Outcome, RotationResult
from keyturn.errors import ConfigError, StorageUnavailable
from keyturn.scheduler import FakeClock, Scheduler, parse_schedule
from keyturn.scheduler.state import StateStore
from keyturn.vault import NewRecord, Vault
from tests.unit.scheduler_world import FakeRotate, add_scheduled, advance_to, running

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    with Vault.init(Settings(home=tmp_path)) as v:
        yield v


async def test_backoff_then_needs_attention_then_manual_fix(vault: Vault) -> None:
    [uid] = add_scheduled(vault, [{"spec": "0 2 * * *"}])
    clock = FakeClock(T0)
    journal = Journal(vault.engine)
    rotate = FakeRotate(clock, outcomes={uid: [Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.UNVERIFIED,
                                              Outcome.FAILED]}, journal=journal)
    sched = Scheduler(vault, rotate, clock=clock, max_attempts=4, backoff_base=60, backoff_cap=150)
    async with running(sched):
        await advance_to(sched, clock, T0 + timedelta(days=3))
        due = utc(2026, 1, 5, 2)
        assert rotate.times(uid) == [due, due + timedelta(seconds=60), due + timedelta(seconds=180),
                                     due + timedelta(seconds=330)]  # delays 60, 120, 150 (capped)
        st = StateStore(vault.engine).get(uid)
        assert st is not None and st.needs_attention and st.next_due is None and st.attempts == 4
        assert "4 failed attempts; last: fake" in st.attention_reason
        assert sched.queue_depth() == 0
        # A person fixes the device and rotates by hand; the scheduler notices on reload.
        await rotate(uid)
        sched.reload()
        await sched.wait_idle()
        st = StateStore(vault.engine).get(uid)
        assert st is not None and not st.needs_attention and st.attempts == 0
        assert sched.next_due() == [(uid, utc(2026, 1, 8, 2))]
        await advance_to(sched, clock, utc(2026, 1, 8, 3))
    assert rotate.times(uid)[-1] == utc(2026, 1, 8, 2)


async def test_engine_needs_attention_flags_at_once(vault: Vault) -> None:
    [uid] = add_scheduled(vault, [{"spec": "every 1d", "anchor": T0}])
    clock = FakeClock(T0)
    rotate = FakeRotate(clock, outcomes={uid: [Outcome.NEEDS_ATTENTION]})
    sched = Scheduler(vault, rotate, clock=clock, max_attempts=5)
    async with running(sched):
        await advance_to(sched, clock, T0 + timedelta(days=5))
    assert rotate.times(uid) == [T0 + timedelta(days=1)]
    st = StateStore(vault.engine).get(uid)
    assert st is not None and st.needs_attention and st.attention_reason == "fake"


async def test_success_after_failures_resets_attempts(vault: Vault) -> None:
    [uid] = add_scheduled(vault, [{"spec": "every 1d", "anchor": T0}])
    clock = FakeClock(T0)
    rotate = FakeRotate(clock, outcomes={uid: [Outcome.FAILED, Outcome.ROTATED_SCRIPT_ERRORS]})
    sched = Scheduler(vault, rotate, clock=clock, max_attempts=2, backoff_base=600)
    async with running(sched):
        await advance_to(sched, clock, T0 + timedelta(days=3, hours=1))
    d1 = T0 + timedelta(days=1)
    assert rotate.times(uid) == [d1, d1 + timedelta(minutes=10), d1 + timedelta(days=1),
                                 d1 + timedelta(days=2)]


async def test_ntp_step_back_does_not_rerun_and_forward_does_not_burst(vault: Vault) -> None:
    [uid] = add_scheduled(vault, [{"spec": "0 2 * * *"}])
    clock = FakeClock(T0)
    rotate = FakeRotate(clock)
    sched = Scheduler(vault, rotate, clock=clock)
    async with running(sched):
        await advance_to(sched, clock, utc(2026, 1, 5, 3))
        assert rotate.times(uid) == [utc(2026, 1, 5, 2)]
        clock.set(utc(2026, 1, 5, 1))                      # NTP steps back two hours
        await advance_to(sched, clock, utc(2026, 1, 5, 3))  # 02:00 comes round again
        assert rotate.times(uid) == [utc(2026, 1, 5, 2)]
        clock.set(utc(2026, 1, 15, 12))                     # steps forward ten days
        await sched.wait_idle()
        assert rotate.times(uid) == [utc(2026, 1, 5, 2), utc(2026, 1, 15, 12)]  # nine missed slots: one run
        await advance_to(sched, clock, utc(2026, 1, 17, 3))
    assert rotate.times(uid)[2:] == [utc(2026, 1, 16, 2), utc(2026, 1, 17, 2)]


async def test_dst_fall_back_through_the_loop_runs_daily_once(vault: Vault) -> None:
    [uid] = add_scheduled(vault, [{"spec": "30 2 * * *", "tz": "Europe/Berlin"}])
    clock = FakeClock(utc(2026, 10, 23, 12))
    rotate = FakeRotate(clock)
    sched = Scheduler(vault, rotate, clock=clock)
    async with running(sched):
        await advance_to(sched, clock, utc(2026, 10, 27, 12))
    assert rotate.times(uid) == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30),
                                 utc(2026, 10, 27, 1, 30)]


async def test_overdue_at_restart_go_in_due_order_within_limits(vault: Vault) -> None:
    n = 40
    targets = ["slow" if i % 4 == 0 else "fast" for i in range(n)]
    uids = add_scheduled(vault, [{"spec": "every 1d", "anchor": T0 - timedelta(days=1) + timedelta(minutes=i)}
                                 for i in range(n)], targets=targets)
    clock = FakeClock(T0 - timedelta(hours=1))
    first = FakeRotate(clock)
    async with running(Scheduler(vault, first, clock=clock)):
        pass  # registers every record's next due (T0 + i minutes) durably
    clock.set(T0 + timedelta(hours=5))  # the service was down while all 40 fell due
    gate = asyncio.Event()
    rotate = FakeRotate(clock, gate=gate, targets=dict(zip(uids, targets, strict=True)))
    sched = Scheduler(vault, rotate, clock=clock, concurrency=5, per_target={"slow": 2})
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    await rotate.wait_active(5)
    assert rotate.active["*"] == 5 and rotate.active.get("slow", 0) <= 2
    assert 0 < sched.backlog() <= 35
    gate.set()
    await sched.wait_idle()
    assert sched.backlog() == 0
    stop.set()
    await task
    assert first.calls == []
    assert sorted(u for u, _ in rotate.calls) == sorted(uids)          # each once
    assert rotate.max_active["*"] == 5 and rotate.max_active["slow"] == 2
    for kind in ("slow", "fast"):
        order = [u for u, _ in rotate.calls if rotate.targets[u] == kind]
        assert order == [u for u, t in zip(uids, targets, strict=True) if t == kind]  # due order
    # The overdue slot collapsed into that one run: next dues are tomorrow's slots.
    assert [d for _, d in sched.next_due()] == [T0 + timedelta(days=1, minutes=i) for i in range(n)]


async def test_reload_picks_up_new_changed_and_removed_schedules(vault: Vault) -> None:
    a, b = add_scheduled(vault, [{"spec": "0 2 * * *"}, {"spec": "0 3 * * *"}])
    clock = FakeClock(T0)
    rotate = FakeRotate(clock)
    sched = Scheduler(vault, rotate, clock=clock)
    async with running(sched):
        assert sched.next_due() == [(a, utc(2026, 1, 5, 2)), (b, utc(2026, 1, 5, 3))]
        vault.set_meta(a, "schedule", parse_schedule("0 4 * * *").to_meta())
        vault.set_meta(b, "schedule", None)
        [c] = add_scheduled(vault, [{"spec": "0 1 * * *"}])
        sched.reload()
        await sched.wait_idle()
        assert sched.next_due() == [(c, utc(2026, 1, 5, 1)), (a, utc(2026, 1, 5, 4))]
        assert StateStore(vault.engine).get(b) is None
        await advance_to(sched, clock, utc(2026, 1, 5, 5))
    assert [u for u, _ in rotate.calls] == [c, a]


async def test_unschedulable_records_are_reported_not_served(vault: Vault) -> None:
    [uid] = vault.add_many([NewRecord(type="pamUser", title="no profile",
                                      meta={"schedule": parse_schedule("0 2 * * *").to_meta()})])
    [bad] = vault.add_many([NewRecord(type="pamUser", title="bad stored spec",
                                      meta={"rotation": {"target": "noop"},
                                            "schedule": {"spec": "0 2 * *", "tz": "UTC"}})])
    clock = FakeClock(T0)
    sched = Scheduler(vault, FakeRotate(clock), clock=clock)
    async with running(sched):
        assert sched.queue_depth() == 0
    assert "has no rotation profile" in sched.invalid[uid]
    assert "neither cron" in sched.invalid[bad]


async def test_window_missed_while_queued_moves_to_next_opening(vault: Vault) -> None:
    uids = add_scheduled(vault, [{"spec": "0 1 * * 6", "window": "Sat 01:00-01:30"} for _ in range(2)])
    clock = FakeClock(T0)
    gate = asyncio.Event()
    rotate = FakeRotate(clock, gate=gate)
    sched = Scheduler(vault, rotate, clock=clock, concurrency=1)
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    await sched.wait_idle()
    clock.set(utc(2026, 1, 10, 1))
    await rotate.wait_active(1)
    clock.set(utc(2026, 1, 10, 2))      # the first rotation outlasts the window
    gate.set()
    await sched.wait_idle()
    assert len(rotate.calls) == 1
    second = next(u for u in uids if u != rotate.calls[0][0])
    assert dict(sched.next_due())[second] == utc(2026, 1, 17, 1)
    await advance_to(sched, clock, utc(2026, 1, 17, 2))
    stop.set()
    await task
    assert rotate.times(second) == [utc(2026, 1, 17, 1)]


def test_bad_settings_are_refused(vault: Vault) -> None:
    async def rotate(uid: str) -> object:
        raise AssertionError
    with pytest.raises(ConfigError, match="concurrency"):
        Scheduler(vault, rotate, concurrency=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="per-target"):
        Scheduler(vault, rotate, per_target={"x": 0})  # type: ignore[arg-type]


async def test_refresh_every_sees_changes_made_by_another_process(vault: Vault) -> None:
    clock = FakeClock(T0)
    rotate = FakeRotate(clock)
    sched = Scheduler(vault, rotate, clock=clock, refresh_every=300)
    async with running(sched):
        assert sched.queue_depth() == 0
        [uid] = add_scheduled(vault, [{"spec": "0 1 * * *"}])   # e.g. `keyturn schedule set` elsewhere
        await advance_to(sched, clock, T0 + timedelta(minutes=4))
        assert sched.queue_depth() == 0
        await advance_to(sched, clock, T0 + timedelta(minutes=5))
        assert sched.next_due() == [(uid, utc(2026, 1, 5, 1))]
        await advance_to(sched, clock, utc(2026, 1, 5, 2))
    assert rotate.times(uid) == [utc(2026, 1, 5, 1)]


async def test_failing_recovery_and_crashing_rotate_do_not_stop_the_loop(vault: Vault) -> None:
    [uid] = add_scheduled(vault, [{"spec": "0 2 * * *"}])
    clock = FakeClock(T0)
    calls: list[datetime] = []

    async def recover() -> None:
        raise StorageUnavailable("database is unavailable: disk I/O error")

    async def rotate(record_uid: str) -> RotationResult:
        calls.append(clock.now())
        if len(calls) == 1:
            raise RuntimeError("bug in a target")
        return RotationResult(record_uid=record_uid, title="", target="noop", outcome=Outcome.ROTATED,
                              reason="ok")

    sched = Scheduler(vault, rotate, clock=clock, recover=recover, backoff_base=60)
    async with running(sched):
        await advance_to(sched, clock, utc(2026, 1, 5, 3))
    assert calls == [utc(2026, 1, 5, 2), utc(2026, 1, 5, 2, 1)]
    st = StateStore(vault.engine).get(uid)
    assert st is not None and st.last_outcome == "rotated" and st.attempts == 0
