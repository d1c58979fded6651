"""Limits shared through the real Redis on 127.0.0.1:6379, by separate OS processes
(`tests.integration.limits_worker`): the per-organisation budget, a 429's pause, the per-device slots,
a holder killed with SIGKILL, and Redis unreachable. Every test works under its own key prefix and
deletes its keys afterwards."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from keyturn.engine.shared_budgets import RedisOrgBudgets
from keyturn.engine.shared_limits import DeviceSlots
from keyturn.errors import DeviceBusy, LimitsUnavailable
from keyturn.secret import Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint
from keyturn.targets.meraki import MerakiAuthUserTarget

URL = "redis://127.0.0.1:6379/10"  # the database of the limits tests
ROOT = Path(__file__).resolve().parents[2]
# Grants are timed by each process after `acquire` returns, a few ms after the stamp Redis checked;
# a loaded machine can add tens of ms to one of two grants. A window this much shorter than 1 s keeps
# that noise out while still catching any real overrun (a budget per process: 2x; one slot too
# many: the first burst alone).
NOISE = 0.05


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def prefix() -> Iterator[str]:
    if not _redis_up():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    name = f"kt-test-{secrets.token_hex(6)}"
    yield name
    client = redis.Redis.from_url(URL)
    keys = list(client.scan_iter(match=f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _start(*args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "tests.integration.limits_worker", *map(str, args)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> Any:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _most_in_window(stamps: list[float], window: float) -> int:
    """The largest number of stamps inside any half-open interval of length `window`."""
    stamps = sorted(stamps)
    most, first = 0, 0
    for last, t in enumerate(stamps):
        while t - stamps[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_two_processes_share_one_paced_budget_per_org(prefix: str) -> None:
    seconds = 3.0
    start = time.time() + 2.0  # both processes connected and waiting before it
    procs = [_start("hammer", URL, prefix, "org-1", start, seconds, 3) for _ in range(2)]
    results = [_result(p) for p in procs]
    limit, interval = results[0]["limit"], results[0]["interval"]
    assert (limit, interval) == (9, pytest.approx(1.04 / 9))  # floor(10 x 0.9), paced 0.116 s apart
    per_process = [[g for g in r["grants"] if start <= g < start + seconds] for r in results]
    grants = sorted(g for g in per_process[0] + per_process[1])
    assert all(per_process), "both processes got grants"
    # Never above the share: no (1 s - noise) window holds more than `limit` grants of both processes.
    assert _most_in_window(grants, 1.0 - NOISE) <= limit
    # Paced, not bunched: limit + 1 grants in a row span about 1 + jitter s, never much less; most
    # gaps are near the interval (a burst would show many near 0).
    assert min(b - a for a, b in zip(grants, grants[limit:], strict=False)) >= 1.0 - NOISE
    gaps = sorted(b - a for a, b in itertools.pairwise(grants))
    assert gaps[len(gaps) // 2] == pytest.approx(interval, abs=0.02)
    # Throughput sanity, not timing: saturated callers get close to one grant per interval.
    assert 0.9 * seconds / interval <= len(grants) <= seconds / interval + 2, len(grants)


def test_a_429_in_one_process_pauses_the_org_in_the_other(prefix: str) -> None:
    start = time.time() + 2.0
    pause = 1.5
    hammer = _start("hammer", URL, prefix, "org-1", start, 4.0, 2)
    penalizer = _start("penalize", URL, prefix, "org-1", start + 1.2, pause)
    said = _result(penalizer)
    grants = sorted(_result(hammer)["grants"])
    at = said["penalized_at"]
    assert said["penalties"] == 1
    before = [g for g in grants if g < at]
    during = [g for g in grants if at + 0.1 <= g < at + pause - 0.1]
    after = [g for g in grants if g >= at + pause]
    assert before, "the other process was getting grants before the 429"
    assert during == [], f"{len(during)} grants while the org was paused"
    assert after, "the other process resumed after the pause"


@pytest.mark.parametrize("per_device", [1, 2])
def test_device_slots_hold_across_processes(prefix: str, per_device: int) -> None:
    start = time.time() + 2.0
    procs = [_start("slots", URL, prefix, "sw01", start, 2.0, per_device + 1, per_device) for _ in range(2)]
    results = [_result(p) for p in procs]
    assert all(r["held"] for r in results), "each process held the device at some point"
    # Holders counted in Redis at entry, and the recorded holds (each inside its real one) overlapping.
    assert max(r["most"] for r in results) == per_device
    events = sorted([(t0, 1) for r in results for t0, _ in r["held"]] +
                    [(t1, -1) for r in results for _, t1 in r["held"]], key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    assert peak <= per_device


async def test_a_killed_holders_slot_frees_after_its_ttl(prefix: str) -> None:
    ttl = 2.0
    holder = _start("hold", URL, prefix, "sw01", ttl)
    slots = DeviceSlots(URL, ttl=ttl, prefix=prefix, poll=0.05)
    try:
        line = await asyncio.to_thread(holder.stdout.readline)  # type: ignore[union-attr]
        assert line.strip() == "held", holder.stderr.read() if holder.stderr else ""
        await asyncio.sleep(ttl * 1.5)  # past one ttl: the holder's renewals keep the slot
        with pytest.raises(DeviceBusy, match="sw01") as busy:
            async with slots.hold("sw01", wait=0):
                pass
        assert busy.value.device == "sw01"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with pytest.raises(DeviceBusy):  # no release ran: the slot stays until it expires
            async with slots.hold("sw01", wait=0):
                pass
        async with slots.hold("sw01", wait=ttl * 5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for pipe in (holder.stdout, holder.stderr):
            if pipe is not None:
                pipe.close()
        await slots.aclose()


async def test_a_request_that_left_late_pushes_back_the_one_limit_sends_later(prefix: str) -> None:
    """The send log in Redis: a request whose connection took 0.3 s counts from when it left, so the
    request `limit` sends later is at least 1 s + margin after that, not after its slot."""
    budgets = RedisOrgBudgets(URL, headroom=0.2, prefix=prefix)  # 2 per second, paced 0.52 s apart
    try:
        assert (budgets.limit, budgets.interval) == (2, pytest.approx(0.52))
        on_wire = await budgets.acquire("org-1")
        await asyncio.sleep(0.3)  # the TLS handshake of a new connection
        on_wire()
        left = time.monotonic()
        await budgets.acquire("org-1")
        await budgets.acquire("org-1")
        assert time.monotonic() - left >= budgets.pacing.window - 0.005
        assert list(budgets.late_sends) and max(budgets.late_sends) >= 0.29
    finally:
        await budgets.aclose()


async def test_pause_keeps_the_later_expiry(prefix: str) -> None:
    budgets = RedisOrgBudgets(URL, prefix=prefix)
    client = redis.asyncio.Redis.from_url(URL)
    try:
        await budgets.apenalize("org-1", 30)
        await budgets.apenalize("org-1", 1)  # a shorter Retry-After does not cut a longer pause
        assert await client.pttl(budgets.pause_key("org-1")) > 20_000
        assert budgets.penalties() == 2
    finally:
        await client.aclose()
        await budgets.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


async def test_redis_unreachable_is_a_clear_error_never_unlimited() -> None:
    port = _free_port()
    url = f"redis://:not-to-be-shown@127.0.0.1:{port}/0"
    budgets = RedisOrgBudgets(url, timeout=2)
    slots = DeviceSlots(url, timeout=2)
    try:
        with pytest.raises(LimitsUnavailable) as exc:
            await budgets.acquire("org-1")
        assert f"redis://127.0.0.1:{port}/0" in str(exc.value)
        assert "taking a request slot of organisation org-1" in str(exc.value)
        assert "not-to-be-shown" not in str(exc.value)
        with pytest.raises(LimitsUnavailable):
            await budgets.apenalize("org-1", 1)
        with pytest.raises(LimitsUnavailable, match="taking a slot of device sw01") as exc:
            async with slots.hold("sw01", wait=5):
                pass
        assert "not-to-be-shown" not in str(exc.value)
    finally:
        await budgets.aclose()
        await slots.aclose()


async def test_the_meraki_targets_429_reaches_every_worker_through_redis(prefix: str) -> None:
    """The target reports a 429 with the synchronous `penalize`; the pause must land in Redis, where
    every other worker's acquire reads it."""
    budgets = RedisOrgBudgets(URL, prefix=prefix)
    client = redis.asyncio.Redis.from_url(URL)
    key = budgets.pause_key("2930418")
    user = {"id": "u1", "email": "jane@example.com"}
    seen: list[tuple[str, int]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, int(await client.pttl(key))))
        if len(seen) == 1:
            return httpx.Response(429, json={"errors": ["Too many requests"]}, headers={"Retry-After": "1"})
        return httpx.Response(200, json=[user] if request.method == "GET" else user)

    async def pause_in_redis() -> int:
        while (ms := int(await client.pttl(key))) <= 0:
            await asyncio.sleep(0.005)
        return ms

    target = MerakiAuthUserTarget(lambda _: httpx.AsyncClient(transport=httpx.MockTransport(handler)),
                                  budget=budgets)
    account = Account(record_uid="rec-m", username="jane@example.com",
                      endpoint=Endpoint(host="api.meraki.com", network_id="N_1", org_id="2930418"),
                      admin=AdminCredential("api", Secret("k" * 40)))
    watcher = asyncio.create_task(pause_in_redis())
    try:
        await target.change(account, None, Secret("n3w-pass"))
        assert await asyncio.wait_for(watcher, 5) > 0  # in Redis while the target waited out the 429
    finally:
        watcher.cancel()
        await target.aclose()
        await budgets.aclose()
        await client.aclose()
    assert [method for method, _ in seen] == ["GET", "GET", "PUT"]
    assert seen[0][1] < 0  # no pause before the 429
    assert budgets.penalties() == 1
