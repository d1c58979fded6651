"""The parts of the shared limits that need no Redis: the per-second count, URLs in messages, and the
`Budgets` seam (the pool hands an injected budget to the Meraki target; `/metrics` reads its count).
Constructing the Redis-backed classes opens no connection."""

from __future__ import annotations

import pytest

from keyturn.engine.ratelimit import Budgets, OrgBudgets
from keyturn.engine.redis_access import redacted_url
from keyturn.engine.rotate import TargetPool
from keyturn.engine.shared_budgets import RedisOrgBudgets
from keyturn.engine.shared_limits import DeviceSlots
from keyturn.errors import ConfigError
from keyturn.serve import rate_limited
from keyturn.targets.meraki import MerakiAuthUserTarget

NOWHERE = "redis://127.0.0.1:1/0"  # never contacted by these tests


class CountingBudgets:
    """A `Budgets` that grants at once and remembers the 429s reported to it."""

    def __init__(self) -> None:
        self.penalized: list[tuple[str, float]] = []

    async def acquire(self, org: str) -> None:
        return None

    def penalize(self, org: str, retry_after: float) -> None:
        self.penalized.append((org, retry_after))

    def penalties(self) -> int:
        return len(self.penalized)


@pytest.mark.parametrize(("rate", "burst", "headroom", "limit"), [
    (10, 10, 0.9, 9),     # Meraki at the default share
    (10, 10, 1.0, 10),
    (10, 10, 0.3, 3),     # 0.3 * 10 is 3.0000000000000004 in floats: still 3
    (10, 10, 0.7, 7),
    (10, 10, 0.05, 1),    # never 0: one request per second at least
    (10, 5, 0.9, 4),      # a smaller burst caps the window
])
def test_requests_per_second_per_org(rate: float, burst: int, headroom: float, limit: int) -> None:
    assert RedisOrgBudgets(NOWHERE, rate, burst, headroom).limit == limit


@pytest.mark.parametrize("headroom", [0, 1.5, -0.1])
def test_headroom_outside_0_1_is_refused(headroom: float) -> None:
    with pytest.raises(ValueError, match="headroom"):
        RedisOrgBudgets(NOWHERE, headroom=headroom)


def test_device_slots_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="per_device"):
        DeviceSlots(NOWHERE, per_device=0)
    with pytest.raises(ValueError, match="ttl"):
        DeviceSlots(NOWHERE, ttl=0)


def test_keys_live_under_the_prefix() -> None:
    budgets = RedisOrgBudgets(NOWHERE, prefix="kt")
    assert budgets.pause_key("2930418") == "kt:budget-pause/2930418"
    assert budgets.slot_key("2930418") == "kt:budget-next/2930418"
    assert DeviceSlots(NOWHERE, prefix="kt").slot_key("sw01", 0) == "kt:device-slot/sw01/0"


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw-123@redis.example.net:6380/2", "redis://redis.example.net:6380/2"),
    ("rediss://worker:pw-123@redis.example.net/0", "rediss://redis.example.net/0"),
    ("redis://127.0.0.1", "redis://127.0.0.1"),
    ("unix://:pw-123@/run/redis/redis.sock", "unix:///run/redis/redis.sock"),
])
def test_urls_in_messages_carry_no_credentials(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_a_url_that_is_not_redis_is_a_config_error_without_its_password() -> None:
    with pytest.raises(ConfigError, match="is not a Redis URL") as exc:
        RedisOrgBudgets("http://user:pw-123@redis.example.net:6379/0")
    assert "pw-123" not in str(exc.value)


def test_in_process_budgets_count_their_penalties() -> None:
    budgets = OrgBudgets()
    assert budgets.penalties() == 0
    budgets.penalize("org-a", 1)
    budgets.penalize("org-b", 2)
    budgets.penalize("org-a", 1)
    assert budgets.penalties() == 3
    assert rate_limited(budgets)() == 3


def test_the_pool_hands_an_injected_budget_to_the_meraki_target() -> None:
    injected: Budgets = CountingBudgets()
    pool = TargetPool(budgets=injected)
    target = pool.get("meraki-auth-user")
    assert isinstance(target, MerakiAuthUserTarget) and target.budget is injected
    assert isinstance(TargetPool().budgets, OrgBudgets)  # the default stays in-process
    shared: Budgets = RedisOrgBudgets(NOWHERE)  # the Redis one fits the same seam
    assert TargetPool(budgets=shared).budgets is shared
