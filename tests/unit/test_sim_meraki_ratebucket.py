"""Token bucket of the simulators, driven by a hand-stepped clock (no sleeps)."""

from __future__ import annotations

import pytest

from keyturn.sim.ratebucket import TokenBucket, retry_after_seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_meraki_budget_allows_30_in_two_seconds_from_idle() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, capacity=10, clock=clock)
    granted = 0
    # a client hammering every millisecond for two seconds
    for _ in range(2000):
        granted += bucket.take()
        clock.now += 0.001
    assert 29 <= granted <= 31


def test_burst_then_steady_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, capacity=10, clock=clock)
    assert sum(bucket.take() for _ in range(15)) == 10
    assert bucket.wait() == pytest.approx(0.1)
    clock.now += 0.1
    assert bucket.take() is True
    assert bucket.take() is False
    clock.now += 5  # idle refills only up to capacity
    assert sum(bucket.take() for _ in range(20)) == 10


def test_retry_after_is_a_whole_number_of_at_least_one_second() -> None:
    assert retry_after_seconds(0.05) == 1
    assert retry_after_seconds(1.0) == 1
    assert retry_after_seconds(1.01) == 2
    assert isinstance(retry_after_seconds(2.5), int)


def test_rejects_nonsense_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, capacity=10)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, capacity=0.5)
