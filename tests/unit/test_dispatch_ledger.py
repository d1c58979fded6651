"""The request ledger's stranded sweep on a fake clock: a request being published is not stranded, one
whose dispatcher died before publishing is, after `older_than`."""

from __future__ import annotations

import uuid

import pytest

from keyturn.dispatch.ledger import NewRequest, RequestLedger
from tests.unit.engine_world import World, open_world


@pytest.fixture
def world(tmp_path):
    yield from open_world(tmp_path)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_large_submit_still_being_published_is_not_stranded(world: World) -> None:
    clock = Clock()
    ledger = RequestLedger(world.vault.engine, clock=clock)
    ids = [uuid.uuid4().hex for _ in range(3)]
    ledger.create([NewRequest(rid, world.user, "u1", "default") for rid in ids], actor="test")
    assert {r.published_at for r in ledger.get_many(ids)} == {clock.now}
    clock.now += 20  # publishing the first of a large submit took 20 s; the sweep runs meanwhile
    ledger.published(ids[:1])
    queued, dead = ledger.stranded(["default"], older_than=30)
    assert (queued, dead) == ([], [])  # nothing re-published while the dispatcher is at work
    clock.now += 15  # the dispatcher died: the two never published are stranded 30 s after creation
    queued, _ = ledger.stranded(["default"], older_than=30)
    assert sorted(r.id for r in queued) == sorted(ids[1:])
    assert ledger.stranded(["elsewhere"], older_than=30) == ([], [])
