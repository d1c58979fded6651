from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keyturn.config import load_settings
from keyturn.engine.ratelimit import OrgBudgets, TokenBucket
from keyturn.engine.rotate import RotationEngine
from keyturn.errors import ConfigError
from keyturn.targets.meraki import MerakiAuthUserTarget
from keyturn.vault import Vault


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, no real waiting


async def test_burst_then_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(10, 10, t.clock, t.sleep)
    start = t.now
    for _ in range(10):
        await bucket.acquire()
    assert t.now == start  # the burst is free
    for _ in range(20):
        await bucket.acquire()
    # 30 requests from idle take 2 s at 10/s + burst 10: Meraki's documented "30 in 2 s".
    assert t.now - start == pytest.approx(2.0)


async def test_idle_refills_up_to_burst_only() -> None:
    t = FakeTime()
    bucket = TokenBucket(5, 3, t.clock, t.sleep)
    for _ in range(3):
        assert bucket.try_acquire()
    assert not bucket.try_acquire()
    t.now += 100
    assert bucket.tokens == pytest.approx(3)


async def test_penalize_pauses_everyone_sharing_the_bucket() -> None:
    t = FakeTime()
    bucket = TokenBucket(10, 10, t.clock, t.sleep)
    start = t.now
    bucket.penalize(3)
    assert bucket.tokens == 0
    assert not bucket.try_acquire()
    done: list[float] = []

    async def worker() -> None:
        await bucket.acquire()
        done.append(t.now - start)

    await asyncio.gather(*(worker() for _ in range(5)))
    # Nobody gets a token before Retry-After; then tokens trickle at the rate (no burst refilled).
    assert min(done) >= 3.0
    assert done == sorted(done)
    assert max(done) == pytest.approx(3.5)
    assert bucket.penalties == 1


async def test_acquire_is_fifo() -> None:
    t = FakeTime()
    bucket = TokenBucket(1, 1, t.clock, t.sleep)
    order: list[int] = []

    async def worker(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    await asyncio.gather(*(worker(i) for i in range(6)))
    assert order == list(range(6))


async def test_org_budgets_headroom_and_isolation() -> None:
    t = FakeTime()
    budgets = OrgBudgets(clock=t.clock, sleep=t.sleep)
    assert budgets.rate == pytest.approx(9.0) and budgets.burst == 9
    start = t.now
    for _ in range(9 + 18):
        await budgets.acquire("org-a")
    assert t.now - start == pytest.approx(2.0)  # 27 in 2 s: 90 % of the documented 30
    # Another org has its own full bucket.
    assert budgets.bucket("org-b").try_acquire()
    budgets.penalize("org-b", 5)
    assert not budgets.bucket("org-b").try_acquire()
    assert budgets.bucket("org-a") is budgets.bucket("org-a")
    assert budgets.orgs() == ["org-a", "org-b"]


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1)
    with pytest.raises(ValueError):
        OrgBudgets(headroom=1.5)


def test_meraki_share_comes_from_settings_and_is_shared_by_the_pool(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_MERAKI_API_SHARE", "0.5")
    vault = Vault.init(load_settings(home=tmp_path))
    try:
        pool = RotationEngine(vault).targets
        target = pool.get("meraki-auth-user")
        assert isinstance(target, MerakiAuthUserTarget) and target.budget is pool.budgets
        assert (pool.budgets.rate, pool.budgets.burst) == (5.0, 5)
    finally:
        vault.close()


@pytest.mark.parametrize("share", ["0", "1.5", "-0.1"])
def test_meraki_share_outside_0_1_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             share: str) -> None:
    monkeypatch.setenv("KEYTURN_MERAKI_API_SHARE", share)
    with pytest.raises(ConfigError, match="meraki_api_share"):
        load_settings(home=tmp_path)
