"""Failure semantics of the scale-out on a Redis broker (issue 13, item 6): a worker killed mid-rotation,
a broker restart that loses the queue, a poison account, duplicate deliveries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.dispatch.app import queue_name
from keyturn.dispatch.client import Dispatcher
from keyturn.engine.journal import Journal
from keyturn.vault import Vault
from tests.lab_fixtures import running_lab
from tests.scaleout.scenarios import assert_recovered_by_second, kill_mid_rotation, restart_mid_run
from tests.scaleout.settled import assert_settled, lab_accounts
from tests.scaleout.workers import (
    env_for,
    keyturn,
    private_redis,
    redis_db,
    results,
    unique_site,
    wait_until,
    workers,
)

pytestmark = pytest.mark.asyncio

DB = 7   # a Redis database of this module's own: the suite runs modules in parallel


@pytest.mark.parametrize("step", ["apply", "commit"])
async def test_a_worker_killed_mid_rotation_is_settled_by_the_next_after_the_visibility_timeout(
        tmp_path: Path, step: str):
    broker = redis_db(DB)
    k = await kill_mid_rotation(tmp_path, broker=broker, redis=broker, step=step,
                                KEYTURN_BROKER_VISIBILITY_TIMEOUT="5")
    assert_recovered_by_second(k, step)
    # Redis handed the unacknowledged message out again: nobody re-published it.
    assert len({r.published_at for r in k.requests.values()}) == 1


async def test_a_redis_restart_that_loses_the_queue_still_ends_every_request_once(tmp_path: Path):
    # One Redis for broker and shared limits, as by default; no persistence: a restart loses every key.
    async with private_redis(tmp_path) as server:

        async def restart() -> None:
            await server.kill()
            await asyncio.sleep(1)
            await server.start()

        run = await restart_mid_run(tmp_path, broker=server.url, redis=server.url, site=unique_site(),
                                    restart=restart)
    # The messages of the requests that waited were lost with the queue: the workers' heartbeat
    # published them again, and they ran.
    again = {rid for rid, r in run.requests.items() if r.published_at > min(
        q.published_at for q in run.requests.values())}
    assert again & run.queued_at_restart, (run.queued_at_restart, again)
    assert run.exit_code == 0, run.results
    assert {r["outcome"] for r in run.results} == {"rotated"}


async def test_a_poison_account_ends_needs_attention_after_its_attempts_and_the_queue_goes_on(
        tmp_path: Path):
    broker = redis_db(DB)
    settings = Settings(home=tmp_path / "home")
    site = unique_site()
    async with running_lab(tmp_path, iosxe=3, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        accts = lab_accounts(settings, lab, site)
        poison = accts[0]
        assert poison.device is not None
        async with lab.control() as ctl:
            await ctl.set_faults(poison.device, {"down": True})
        env = env_for(settings.home, broker=broker, redis=broker, sites=[site],
                      KEYTURN_WORKER_ATTEMPTS="2", KEYTURN_WORKER_RETRY_BACKOFF="0.2")
        async with workers(env, tmp_path, 1, "--site", site, "--concurrency", "2") as (worker,):
            code, out, err = await keyturn(env, "rotate", "--all", "--json")
            assert code == 1, out + err + worker.output()
        by_title = {r["title"]: r for r in results(out)}
        poisoned = [r for r in by_title.values() if r["record_uid"] == poison.uid]
        assert len(poisoned) == 1 and poisoned[0]["outcome"] == "needs_attention", out
        assert poisoned[0]["reason"].startswith("failed 2 attempts, nothing was changed; last: "), out
        assert sorted(r["outcome"] for r in by_title.values() if r["record_uid"] != poison.uid) == [
            "rotated", "rotated"]
        async with lab.control() as ctl:
            await ctl.set_faults(poison.device, {"down": False})
        reqs = await assert_settled(settings, lab, accts)
        (req,) = [r for r in reqs.values() if r.record_uid == poison.uid]
        assert (req.attempts, req.deliveries, str(req.outcome)) == (2, 1, "needs_attention")
        vault = Vault.open(settings)
        try:
            tried = Journal(vault.engine).for_record(poison.uid)
        finally:
            vault.close()
        # Two rotations (one per attempt), each failed before the device was changed.
        assert sorted(str(r.outcome) for r in tried) == ["failed", "failed"], tried
        assert {r.id for r in tried} == {req.id, req.rotation_id}


async def test_duplicate_deliveries_of_one_request_rotate_once(tmp_path: Path):
    import redis

    broker = redis_db(DB)
    settings = Settings(home=tmp_path / "home")
    site = unique_site()
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        accts = lab_accounts(settings, lab, site)
        env = env_for(settings.home, broker=broker, redis=broker, sites=[site])
        vault = Vault.open(settings)
        client = redis.Redis.from_url(broker)
        dispatcher = Dispatcher(vault, broker)
        try:
            (req,) = dispatcher.plan([accts[0].uid])
            dispatcher.ledger.create([req], actor="test")
            # Two workers, two messages for one request at once; a third after it ended.
            async with workers(env, tmp_path, 2, "--site", site, "--concurrency", "2"):
                dispatcher.publish([req, req])

                def drained() -> bool:
                    final = bool((r := dispatcher.ledger.get(req.id)) and r.final)
                    return final and client.llen(queue_name(site)) == 0 and client.zcard("unacked_index") == 0

                await wait_until(drained, timeout=60, what="both messages handled")
                dispatcher.publish([req])
                await wait_until(drained, timeout=60, what="the late duplicate handled")
        finally:
            dispatcher.close()
            client.close()
            vault.close()
        reqs = await assert_settled(settings, lab, accts, [req.id])
        assert (reqs[req.id].deliveries, str(reqs[req.id].outcome)) == (1, "rotated")
        vault = Vault.open(settings)
        try:
            assert [r.id for r in Journal(vault.engine).for_record(accts[0].uid)] == [req.id]
        finally:
            vault.close()
