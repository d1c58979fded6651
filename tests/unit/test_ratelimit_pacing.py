"""The per-organisation pacing (`keyturn.engine.ratelimit`) on a fake clock: the GCRA maths, the
guarantee it gives at the receiver for any grant-to-arrival delay within the jitter, the in-process
`Pacer`/`OrgBudgets` (FIFO, no burst, 429 pauses), and the share taken from the settings."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.config import load_settings
from keyturn.engine.ratelimit import (
    SEND_JITTER,
    WIRE_MARGIN,
    OrgBudgets,
    Pacer,
    Pacing,
    pacing_holds,
    pacing_interval,
    per_second,
)
from keyturn.engine.rotate import RotationEngine
from keyturn.errors import ConfigError
from keyturn.targets.meraki import MerakiAuthUserTarget
from keyturn.vault import Vault


class FakeTime:
    """A clock that moves only to the next sleeper's wake-up, once every task has run as far as it can.
    `oversleep` (seconds → extra) makes wake-ups late, like a busy event loop."""

    def __init__(self, oversleep: Callable[[], float] = lambda: 0.0) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._oversleep = oversleep

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        at = self.now + max(0.0, seconds) + self._oversleep()
        heapq.heappush(self._sleepers, (at, next(self._seq), fut))
        await fut

    async def run(self, *coros: Coroutine[Any, Any, None]) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]
        while not all(t.done() for t in tasks):
            for _ in range(50):  # let every ready task reach its next sleep
                await asyncio.sleep(0)
            if self._sleepers:
                at, _, fut = heapq.heappop(self._sleepers)
                self.now = max(self.now, at)
                fut.set_result(None)
        await asyncio.gather(*tasks)


def most_in_window(stamps: Sequence[float], width: float = 1.0) -> int:
    ts, best, i = sorted(stamps), 0, 0
    for j, t in enumerate(ts):
        while t - ts[i] >= width - 1e-9:
            i += 1
        best = max(best, j - i + 1)
    return best


@pytest.mark.parametrize(("rate", "burst", "headroom", "limit"), [
    (10, 10, 0.9, 9), (10, 10, 1.0, 10), (10, 10, 0.3, 3), (10, 10, 0.05, 1), (10, 5, 0.9, 4)])
def test_limit_per_second(rate: float, burst: int, headroom: float, limit: int) -> None:
    assert per_second(rate, burst, headroom) == limit


def test_gcra_paces_with_a_bounded_catch_up() -> None:
    strict = Pacing(limit=4, interval=0.25, tolerance=0.0)
    tat = float("-inf")
    slots = []
    for _ in range(4):
        slot, tat = strict.reserve(tat, 10.0, [])  # four asks at the same instant
        slots.append(slot)
    assert slots == [10.0, 10.25, 10.5, 10.75]
    assert strict.reserve(tat, 100.0, []) == (100.0, 100.25)  # after idle: now, not a saved-up burst
    # With a tolerance, callers that fell behind catch up by that much at once, then are paced.
    loose = Pacing(limit=4, interval=0.25, tolerance=0.5)
    tat, slots = float("-inf"), []
    for _ in range(5):
        slot, tat = loose.reserve(tat, 10.0, [])
        slots.append(slot)
    assert slots == [10.0, 10.0, 10.0, 10.25, 10.5]


def test_no_slot_within_the_window_after_the_limit_th_latest_send() -> None:
    pacing = Pacing(limit=3, interval=0.1, tolerance=10.0, window=1.015)
    sent = [5.0, 5.2, 5.05]  # in any order; the third latest is 5.0
    assert pacing.reserve(float("-inf"), 5.3, sent)[0] == pytest.approx(6.015)
    assert pacing.reserve(float("-inf"), 5.3, sent[:2])[0] == 5.3  # fewer than `limit` sends: free


@pytest.mark.parametrize("limit", range(1, 11))
def test_the_interval_keeps_every_window_within_the_limit_for_any_delay_within_the_jitter(limit: int) -> None:
    interval = pacing_interval(limit)
    assert interval == pytest.approx((1 + SEND_JITTER) / limit)
    assert pacing_holds(limit, interval, SEND_JITTER)
    assert not pacing_holds(limit, interval, SEND_JITTER + 0.01)  # the margin is the jitter, no more
    rng = random.Random(limit)
    grants = [i * interval for i in range(400)]
    for _ in range(50):  # arrivals = grants + any delay in [d, d + jitter]
        base = rng.uniform(0, 0.5)
        arrivals = [g + base + rng.uniform(0, SEND_JITTER) for g in grants]
        assert most_in_window(arrivals) <= limit
    # The worst case: blocks of `limit` grants alternately late by the whole jitter and on time, so
    # arrival i (late) and i + limit (on time) come closest.
    late = [SEND_JITTER if (i // limit) % 2 == 0 else 0.0 for i in range(400)]
    assert most_in_window([g + d for g, d in zip(grants, late, strict=True)]) == limit
    # Paced at 1/limit (a window's worth of grants per second), the same delays put limit + 1 in one.
    assert most_in_window([i / limit + d for i, d in enumerate(late)]) == limit + 1


def test_the_share_kept_is_at_least_95_percent() -> None:
    for limit in range(1, 11):
        assert (1 / pacing_interval(limit)) / limit >= 0.95


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": 9, "jitter": -0.1}, {"limit": 9, "jitter": 1.0}])
def test_pacing_parameters_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        pacing_interval(**bad)


async def test_pacer_grants_one_per_interval_in_arrival_order() -> None:
    t = FakeTime()
    pacer = Pacer(Pacing(limit=2, interval=0.52, tolerance=0.0), t.clock, t.sleep)
    grants: list[tuple[int, float]] = []

    async def caller(i: int) -> None:
        await pacer.acquire()
        grants.append((i, t.now))

    start = t.now
    await t.run(*(caller(i) for i in range(6)))
    assert [i for i, _ in grants] == list(range(6))
    assert [at - start for _, at in grants] == pytest.approx([0, 0.52, 1.04, 1.56, 2.08, 2.6])
    assert pacer.waited == pytest.approx(2.6)  # slept towards slots; the queue behind the lock is not counted


async def test_a_429_pauses_every_caller_even_one_already_waiting_for_its_slot() -> None:
    t = FakeTime()
    pacer = Pacer(Pacing(limit=2, interval=0.52, tolerance=0.0), t.clock, t.sleep)
    start = t.now
    grants: list[float] = []

    async def caller() -> None:
        await pacer.acquire()
        grants.append(t.now - start)

    async def throttled() -> None:
        await t.sleep(0.7)  # the 429 arrives while the third caller sleeps towards its slot at 1.04
        pacer.penalize(3)

    await t.run(*(caller() for _ in range(4)), throttled())
    assert grants[:2] == pytest.approx([0, 0.52])
    assert grants[2:] == pytest.approx([3.7, 4.22])  # nothing during the pause, then paced again
    assert pacer.penalties == 1


async def test_org_budgets_pace_each_organisation_on_its_own() -> None:
    t = FakeTime()
    budgets = OrgBudgets(clock=t.clock, sleep=t.sleep)
    assert budgets.limit == 9 and budgets.interval == pytest.approx(1.04 / 9)
    stamps: dict[str, list[float]] = {"org-a": [], "org-b": []}

    async def caller(org: str) -> None:
        for _ in range(30):
            await budgets.acquire(org)
            stamps[org].append(t.now)

    await t.run(caller("org-a"), caller("org-a"), caller("org-b"))
    assert most_in_window(stamps["org-a"]) <= 9
    assert len(stamps["org-a"]) == 60 and len(stamps["org-b"]) == 30
    assert max(stamps["org-b"]) - min(stamps["org-b"]) == pytest.approx(29 * budgets.interval)
    budgets.penalize("org-b", 5)
    assert budgets.penalties() == 1 and budgets.orgs() == ["org-a", "org-b"]
    assert budgets.pacer("org-a") is budgets.pacer("org-a")


@pytest.mark.parametrize("seed", range(6))
async def test_late_wake_ups_and_stalls_never_put_more_than_the_limit_in_a_window(seed: int) -> None:
    """The receiver's view: callers that stall between requests, wake-ups late by up to 0.2 s (a busy
    event loop), and up to WIRE_MARGIN more on the way to the wire — still at most `limit` arrivals in
    any 1-s window, and while callers keep up, close to one per interval."""
    rng = random.Random(seed)
    t = FakeTime(oversleep=lambda: rng.choice([0.0] * 8 + [rng.uniform(0, 0.2)]))
    budgets = OrgBudgets(clock=t.clock, sleep=t.sleep)
    arrivals: list[float] = []

    async def caller() -> None:
        for _ in range(40):
            await budgets.acquire("org-a")
            arrivals.append(t.now + rng.uniform(0, WIRE_MARGIN))
            if rng.random() < 0.1:
                await t.sleep(rng.uniform(0, 2))  # a stall elsewhere in the rotation

    await t.run(*(caller() for _ in range(4)))
    assert len(arrivals) == 160
    assert most_in_window(arrivals) <= budgets.limit


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="headroom"):
        OrgBudgets(headroom=1.5)
    with pytest.raises(ValueError):
        OrgBudgets(rate=0)


def test_meraki_share_comes_from_settings_and_is_shared_by_the_pool(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_MERAKI_API_SHARE", "0.5")
    vault = Vault.init(load_settings(home=tmp_path))
    try:
        pool = RotationEngine(vault).targets
        target = pool.get("meraki-auth-user")
        assert isinstance(target, MerakiAuthUserTarget) and target.budget is pool.budgets
        assert isinstance(pool.budgets, OrgBudgets) and pool.budgets.limit == 5
    finally:
        vault.close()


@pytest.mark.parametrize("share", ["0", "1.5", "-0.1"])
def test_meraki_share_outside_0_1_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             share: str) -> None:
    monkeypatch.setenv("KEYTURN_MERAKI_API_SHARE", share)
    with pytest.raises(ConfigError, match="meraki_api_share"):
        load_settings(home=tmp_path)


async def test_a_request_that_left_late_pushes_back_the_one_limit_sends_later() -> None:
    """`OnWire` raises the send's stamp: a connection that took 0.3 s to set up counts from then."""
    t = FakeTime()
    pacer = Pacer(Pacing(limit=2, interval=0.52, tolerance=0.0, window=1.0), t.clock, t.sleep)
    start = t.now
    on_wire = await pacer.acquire()
    t.now += 0.3  # the TLS handshake of a new connection
    on_wire()
    grants: list[float] = []

    async def caller() -> None:
        await pacer.acquire()
        grants.append(t.now - start)

    await t.run(caller(), caller())
    assert grants == pytest.approx([0.52, 1.3])  # not 1.04: the first request reached the wire at 0.3


async def test_the_meraki_targets_trace_calls_on_wire_when_the_headers_go_out() -> None:
    """Through httpx over a real socket: the trace fires once per request, after the connection."""
    from keyturn.targets.meraki_api import _on_wire_trace

    events: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        events.append("server read")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{port}/", extensions=_on_wire_trace(
                lambda: events.append("on wire")))
        assert r.text == "ok"
    finally:
        server.close()
        await server.wait_closed()
    assert events == ["on wire", "server read"]
    assert _on_wire_trace(None) is None
