"""Batch rotation: input order, per-device limit, one failure never stops the others."""

from __future__ import annotations

import asyncio

import pytest

from keyturn.engine.batch import rotate_many
from keyturn.engine.outcome import Outcome
from keyturn.vault import Field
from tests.unit.engine_world import DeviceFile, World, open_world


@pytest.fixture
def world(tmp_path):
    yield from open_world(tmp_path)


async def test_many_accounts_in_order_with_per_device_limit(world: World, tmp_path):
    uids = [world.user]
    for i in range(5):
        world.dev.set_user(f"user{i}", f"Initial-Passw0rd-{i}")
        uids.append(world.add_user(f"u-extra-{i}", f"user{i}", f"Initial-Passw0rd-{i}"))
    # A second device, and one account whose change the device refuses.
    dev2 = DeviceFile(tmp_path / "device2.json")
    dev2.set_user("ops", "Ops-Passw0rd-1")
    dev2.set(refuse=1)
    res2 = world.vault.add(type="pamNetworkDevice", title="sw2",
                           fields=[Field("host", value=[str(dev2.path)])])
    bad = world.add_user("u-sw2", "ops", "Ops-Passw0rd-1", resource=res2.uid)
    uids.insert(3, bad)
    seen: list[tuple[str, int, int]] = []
    fake = world.targets["fake"]
    fake.gate = asyncio.Event()
    host = str(world.dev.path)
    engine = world.engine()
    try:
        batch = asyncio.create_task(rotate_many(
            engine, [*uids, world.user], concurrency=8, per_device=2,
            progress=lambda r, done, total: seen.append((r.title, done, total))))

        async def two_in_flight() -> None:
            while fake.parallel.get(host, 0) < 2:
                await asyncio.sleep(0)

        await asyncio.wait_for(two_in_flight(), timeout=30)
        for _ in range(200):                      # give a third rotation every chance to slip in
            await asyncio.sleep(0)
        assert fake.parallel[host] == 2
        fake.gate.set()
        results = await batch
    finally:
        await engine.aclose()
    assert [r.record_uid for r in results] == [*uids, world.user]
    assert [r.outcome for r in results].count(Outcome.ROTATED) == 7        # 6 + the duplicate reference
    assert results[3].outcome is Outcome.FAILED and "refused" in results[3].reason
    assert sorted(d for _, d, _ in seen) == list(range(1, 8)) and {t for _, _, t in seen} == {7}
    assert fake.max_parallel[host] == 2
    for i in range(5):
        assert world.vault.secret(uids[i + 1 if i < 2 else i + 2]).reveal() == world.dev.password(f"user{i}")


async def test_unknown_reference_is_a_failed_result_not_an_exception(world: World):
    engine = world.engine()
    try:
        results = await rotate_many(engine, ["no-such-record", world.user])
    finally:
        await engine.aclose()
    assert results[0].outcome is Outcome.FAILED and "no-such-record" in results[0].reason
    assert results[1].outcome is Outcome.ROTATED


async def test_rotations_start_round_robin_over_resources(world: World, tmp_path):
    # A batch listed device by device: with 2 slots, input order would put both on the first device
    # while the second waits (for Meraki: one organisation's budget busy, the other's idle).
    dev2 = DeviceFile(tmp_path / "device2.json")
    res2 = world.vault.add(type="pamNetworkDevice", title="sw2",
                           fields=[Field("host", value=[str(dev2.path)])])
    first, second = [world.user], []
    for i in range(3):
        world.dev.set_user(f"a{i}", f"Initial-Passw0rd-a{i}")
        first.append(world.add_user(f"u-a{i}", f"a{i}", f"Initial-Passw0rd-a{i}"))
    for i in range(4):
        dev2.set_user(f"b{i}", f"Initial-Passw0rd-b{i}")
        second.append(world.add_user(f"u-b{i}", f"b{i}", f"Initial-Passw0rd-b{i}", resource=res2.uid))
    fake = world.targets["fake"]
    fake.gate = asyncio.Event()
    engine = world.engine()
    try:
        batch = asyncio.create_task(rotate_many(engine, first + second, concurrency=2, per_device=4))

        async def two_in_flight() -> None:
            while sum(fake.parallel.values()) < 2:
                await asyncio.sleep(0)

        await asyncio.wait_for(two_in_flight(), timeout=30)
        for _ in range(200):
            await asyncio.sleep(0)
        assert fake.parallel == {str(world.dev.path): 1, str(dev2.path): 1}
        fake.gate.set()
        results = await batch
    finally:
        await engine.aclose()
    assert [r.record_uid for r in results] == first + second     # results stay in input order
    assert all(r.outcome is Outcome.ROTATED for r in results)
