"""Anonymous 401s cannot grow the audit log without limit: a per-client budget, the rest counted."""

from __future__ import annotations

import pytest

from keyturn.api.denials import DenialBudget
from tests.unit.api_world import Api


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_budget_then_suppressed_count_reported_on_the_next_admitted() -> None:
    clock = Clock()
    budget = DenialBudget(per_minute=6, burst=3, clock=clock)
    assert [budget.admit("10.0.0.9") for _ in range(3)] == [0, 0, 0]
    assert [budget.admit("10.0.0.9") for _ in range(5)] == [None] * 5
    assert budget.admit("10.0.0.7") == 0                  # another client has its own budget
    clock.now += 10                                       # 6/min: one token back after 10 s
    assert budget.admit("10.0.0.9") == 5                  # the five skipped are reported here
    assert budget.admit("10.0.0.9") is None


def test_client_table_is_bounded() -> None:
    clock = Clock()
    budget = DenialBudget(per_minute=1, burst=1, max_clients=2, clock=clock)
    assert budget.admit("a") == 0 and budget.admit("a") is None
    budget.admit("b")
    budget.admit("c")                                     # "a" is the least recently seen: dropped
    assert budget.admit("a") == 0                         # starts again with a full budget


@pytest.mark.parametrize("args", [{"per_minute": 0}, {"burst": 0}, {"max_clients": 0}])
def test_bad_budget_is_refused(args: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="required"):
        DenialBudget(**args)


async def test_a_401_flood_writes_a_bounded_number_of_audit_entries(api: Api) -> None:
    # A still clock: the budget refills 30 a minute, and a slow machine would otherwise earn a token
    # back in the middle of the flood (seen as 31 entries under load).
    api.app.state.ctx.denials = DenialBudget(clock=lambda: 0.0)
    burst = int(api.app.state.ctx.denials.burst)
    before = len(api.world.vault.audit.list(action="api.denied"))
    for _ in range(burst + 70):
        # No token: bad tokens would be throttled first (tests/security/test_api_hardening.py).
        r = await api.client.get("/records")
        assert r.status_code == 401
    denied = api.world.vault.audit.list(action="api.denied")
    assert len(denied) - before == burst                 # the rest were counted, not written
    r = await api.client.get("/records", headers=api.auth("auditor"))    # a valid token still works
    assert r.status_code == 200
    r = await api.client.post("/rotations", json={"records": [api.world.user]},
                              headers=api.auth("auditor"))               # 403s: a budget per token
    assert r.status_code == 403
    assert len(api.world.vault.audit.list(action="api.denied")) - before == burst + 1
