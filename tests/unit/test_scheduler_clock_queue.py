"""The due queue and the clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyturn.scheduler.clock import FakeClock, SystemClock
from keyturn.scheduler.queue import DueQueue

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def test_due_queue_orders_replaces_and_removes() -> None:
    q = DueQueue()
    for i, uid in enumerate("abcde"):
        q.push(uid, T0 + timedelta(minutes=10 - i))
    q.push("a", T0)                        # replaces a's entry
    q.remove("c")
    q.push("f", T0 + timedelta(minutes=7))  # same due as d: stable by push order
    assert len(q) == 5 and "c" not in q and q.due_of("a") == T0
    assert [u for u, _ in q.items()] == ["a", "e", "d", "f", "b"]
    assert q.pop_due(T0 + timedelta(minutes=6, seconds=59)) == ("a", T0)
    assert q.pop_due(T0 + timedelta(minutes=6, seconds=59)) == ("e", T0 + timedelta(minutes=6))
    assert q.pop_due(T0 + timedelta(minutes=6, seconds=59)) is None
    assert [u for u, _ in (q.pop_due(T0 + timedelta(hours=1)) for _ in range(3)) if u] == ["d", "f", "b"]
    assert q.peek() is None and len(q) == 0


async def test_fake_clock_wakes_sleepers_in_time_order_and_survives_steps_back() -> None:
    clock = FakeClock(T0)
    b = clock.sleep_until(T0 + timedelta(minutes=2))   # registered when called
    a = clock.sleep_until(T0 + timedelta(minutes=1))
    assert clock.next_wakeup() == T0 + timedelta(minutes=1)
    clock.advance(90)
    assert a.done() and not b.done()
    await a
    clock.set(T0 - timedelta(hours=1))                 # a step back wakes nobody
    clock.advance(timedelta(minutes=30))
    assert clock.next_wakeup() == T0 + timedelta(minutes=2) and not b.done()
    clock.set(T0 + timedelta(minutes=2))
    await b
    assert clock.next_wakeup() is None
    c = clock.sleep_until(T0 + timedelta(hours=1))
    c.cancel()                                         # cancelled sleepers are dropped
    assert clock.next_wakeup() is None
    await clock.sleep_until(T0)                        # the past: done at once
    with pytest.raises(ValueError, match="aware"):
        FakeClock(datetime(2026, 1, 1))


async def test_system_clock_returns_once_the_time_has_come() -> None:
    clock = SystemClock()
    when = clock.now() + timedelta(milliseconds=30)
    await clock.sleep_until(when)
    assert clock.now() >= when
    await clock.sleep_until(when - timedelta(days=1))
