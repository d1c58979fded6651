"""The worker runtime's rules for one request, on the file-backed fake device (tests/unit/engine_world.py)
and a fake of the shared device slots: a missing slot is a failed attempt that changed nothing, a
redelivery to the process still running the request is a duplicate, an outcome is written once."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from keyturn.config import Settings
from keyturn.dispatch.ledger import NewRequest, RequestLedger
from keyturn.dispatch.runtime import WorkerRuntime
from keyturn.engine.journal import Journal
from keyturn.engine.outcome import Outcome, RotationResult
from keyturn.errors import LimitsUnavailable
from tests.unit.engine_world import OLD, World, open_world


@pytest.fixture
def world(tmp_path):
    yield from open_world(tmp_path)


class Slots:
    """Device slots whose store is down for the first `down` takes (as `DeviceSlots` with Redis gone)."""

    def __init__(self, down: int = 0) -> None:
        self.down = down
        self.taken: list[str] = []

    @contextlib.asynccontextmanager
    async def hold(self, device: str, *, wait: float = 300.0) -> AsyncIterator[None]:
        if self.down > 0:
            self.down -= 1
            raise LimitsUnavailable("shared limits: Redis at redis://127.0.0.1:6379/0 failed while taking a "
                                    "slot (ConnectionError: refused); nothing is granted until it answers")
        self.taken.append(device)
        yield


def runtime(world: World, slots: Slots, attempts: int = 2) -> tuple[WorkerRuntime, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    settings = Settings(home=world.tmp_path / "home", worker_attempts=attempts, worker_retry_backoff=0.5)
    return WorkerRuntime(world.engine(), settings, slots=slots, sleep=sleep), slept


def request(world: World) -> str:
    rid = uuid.uuid4().hex
    RequestLedger(world.vault.engine).create([NewRequest(rid, world.user, "u1", "default")], actor="test")
    return rid


async def test_no_slot_is_a_failed_attempt_tried_again(world):
    rt, slept = runtime(world, Slots(down=1))
    rid = request(world)
    try:
        assert await rt.run(rid) == "rotated"
    finally:
        await rt.engine.aclose()
    req = rt.ledger.get(rid)
    assert req is not None and (req.attempts, req.outcome) == (2, Outcome.ROTATED)
    assert slept == [0.5]
    assert world.current() == world.dev.password("netops") != OLD
    # The attempt without a slot never reached the journal or the device.
    assert [r.id for r in Journal(world.vault.engine).for_record(world.user)] == [req.rotation_id]


async def test_no_slot_on_every_attempt_ends_needs_attention_with_nothing_changed(world):
    rt, _slept = runtime(world, Slots(down=5))
    rid = request(world)
    try:
        assert await rt.run(rid) == "needs_attention"
    finally:
        await rt.engine.aclose()
    req = rt.ledger.get(rid)
    assert req is not None and req.result is not None
    assert req.result["reason"].startswith("failed 2 attempts, nothing was changed; last: shared limits")
    assert world.current() == OLD == world.dev.password("netops")
    assert world.dev.load()["changes"] == 0


async def test_a_redelivery_to_the_process_running_the_request_is_a_duplicate(world):
    rt, _slept = runtime(world, Slots())
    gate = world.targets["fake"].gate = asyncio.Event()
    rid = request(world)
    try:
        first = asyncio.create_task(rt.run(rid))
        while not world.targets["fake"].parallel.get(str(world.dev.path)):
            await asyncio.sleep(0.01)
        assert await rt.run(rid) == "duplicate"
        gate.set()
        assert await first == "rotated"
    finally:
        await rt.engine.aclose()
    req = rt.ledger.get(rid)
    assert req is not None and req.deliveries == 1
    assert len(Journal(world.vault.engine).for_record(world.user)) == 1
    told = [e for e in world.vault.audit.list(action="rotation.request") if e.details["request_id"] == rid]
    assert len(told) == 1


def test_an_outcome_is_written_once(world):
    ledger = RequestLedger(world.vault.engine)
    rid = request(world)
    done = RotationResult(record_uid=world.user, title="u1", target="fake", outcome=Outcome.ROTATED,
                          reason="rotated", rotation_id=rid)
    assert ledger.claim(rid).mine
    assert ledger.complete(rid, done) is True
    again = RotationResult(record_uid=world.user, title="u1", target="fake", outcome=Outcome.FAILED,
                           reason="late", rotation_id=rid)
    assert ledger.complete(rid, again) is False
    req = ledger.get(rid)
    assert req is not None and req.outcome is Outcome.ROTATED


async def test_settling_an_interrupted_rotation_takes_the_device_slot_like_a_rotation(world):
    """A redelivery finds its rotation open (the worker died): the recovery's probes are device sessions,
    so they wait for the device's shared slot; without one the same rotation is settled next attempt."""
    slots = Slots(down=1)
    rt, slept = runtime(world, slots, attempts=3)
    rid = request(world)
    journal = Journal(world.vault.engine)
    journal.start(rotation_id=rid, record_uid=world.user, title="u1", target="fake", lock_key="u1-lock")
    try:
        await rt.run(rid)
    finally:
        await rt.engine.aclose()
    req = rt.ledger.get(rid)
    assert req is not None and req.final
    assert slept[0] == 0.5                          # no slot for the first try: a failed attempt ...
    assert slots.taken[0] == world.resource.uid      # ... then the recovery held the device's slot
    row = journal.get(rid)
    assert row is not None and not row.is_open       # the same rotation, settled (not a second one open)
    assert world.dev.password("netops") == world.current()
