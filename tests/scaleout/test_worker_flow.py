"""`keyturn rotate` with KEYTURN_BROKER_URL: the rotations run on `keyturn worker`s, with the same
output and exit code, each step journaled with the worker that ran it."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.dispatch.ledger import RequestLedger
from keyturn.vault import Vault
from tests.integration.engine_lab import add_iosxe
from tests.lab_fixtures import running_lab
from tests.scaleout.workers import env_for, keyturn, redis_db, results, unique_site, workers

pytestmark = pytest.mark.asyncio


async def test_rotate_all_runs_on_a_worker_of_the_site(tmp_path: Path):
    home = tmp_path / "home"
    site = unique_site()
    broker = redis_db(11)
    async with running_lab(tmp_path, iosxe=3, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        vault = Vault.init(Settings(home=home))
        try:
            accts = add_iosxe(vault, lab.state, "iosxe-restconf")
            for a in accts:
                _uid, meta = vault.meta(a.uid)
                resource = meta["rotation"]["resource"]
                vault.set_meta(resource, "site", site)
        finally:
            vault.close()
        env = env_for(home, broker=broker, redis=broker, sites=[site])
        async with workers(env, tmp_path, 1, "--site", site, "--concurrency", "4") as (worker,):
            code, out, err = await keyturn(env, "rotate", "--all", "--json")
            assert code == 0, out + err + worker.output()
        rows = results(out)
        assert [r["outcome"] for r in rows] == ["rotated"] * 3
        vault = Vault.open(Settings(home=home))
        try:
            async with lab.control() as ctl:
                for a in accts:
                    assert await a.current_logs_in(vault, ctl)
            ledger = RequestLedger(vault.engine)
            done = ledger.get_many([r["rotation_id"] for r in rows])
            assert {str(r.state) for r in done} == {"done"} and {r.site for r in done} == {site}
            from keyturn.engine.journal import Journal

            steps = Journal(vault.engine).steps(rows[0]["rotation_id"])
            assert steps and all(f"site {site}" in s.worker for s in steps)
        finally:
            vault.close()
