"""Fencing: a rotation whose account lease expired and was taken over can never commit anything (on
SQLite and on PostgreSQL, where the fence rides in the chain append's statement)."""

from __future__ import annotations

import asyncio

import pytest

from keyturn.engine.locks import LockManager
from keyturn.engine.outcome import Outcome
from keyturn.errors import LeaseLost
from tests.unit.engine_world import OLD, World
from tests.unit.test_journal_audit_steps import both_databases


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request, tmp_path):
    yield from both_databases(tmp_path, request.param)


def test_takeover_by_the_same_rotation_id_gets_a_new_token(world: World):
    now = [1000.0]
    first = LockManager(world.vault.engine, lease=10, clock=lambda: now[0])
    token = first.acquire("sw1/netops", "r" * 32)
    first.fence("sw1/netops", "r" * 32, token)           # renews: still ours
    now[0] += 11                                        # the lease ran out (a stalled worker)
    taker = LockManager(world.vault.engine, lease=10, clock=lambda: now[0])
    new = taker.acquire("sw1/netops", "r" * 32)          # recovery takes over under the same id
    assert new != token
    with pytest.raises(LeaseLost, match="lost the lock of account sw1/netops"):
        first.fence("sw1/netops", "r" * 32, token)
    first.release("sw1/netops", "r" * 32, token)         # the stale holder's release is a no-op
    assert taker.holder("sw1/netops") is not None
    taker.fence("sw1/netops", "r" * 32, new)


@pytest.mark.asyncio
async def test_a_rotation_that_lost_its_lease_mid_change_commits_nothing(world: World):
    engine = world.engine()
    fake = world.targets["fake"]
    fake.gate = asyncio.Event()
    task = asyncio.create_task(engine.rotate(world.user))
    for _ in range(200):                                 # wait until the change is in flight
        await asyncio.sleep(0.01)
        if sum(fake.parallel.values()):
            break
    held = engine.locks.all()
    assert len(held) == 1
    # Another worker judged the lease expired and took the account over (as recovery does).
    later = LockManager(world.vault.engine, clock=lambda: held[0].expires_at + 1)
    later.acquire(held[0].key, held[0].owner)
    fake.gate.set()
    result = await task
    await engine.aclose()
    assert result.outcome is Outcome.UNVERIFIED
    assert "lost the lock" in result.reason
    # The device took the change, but the stalled rotation promoted nothing: the candidate stays
    # pending for the new holder's recovery to settle, and the old secret is still current.
    assert world.current() == OLD
    assert world.states()[0] == "pending"      # newest first
    row = engine.journal.get(result.rotation_id)
    assert row is not None and row.is_open
