"""The worker flow on PostgreSQL (issue 13, item 5): two workers share a PostgreSQL vault (the storage
workers on several hosts need); every rotation runs once, on one of them, and logs in afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.engine.journal import Journal
from keyturn.vault import Vault
from tests.lab_fixtures import running_lab
from tests.pg import pg_schema_url
from tests.scaleout.settled import assert_settled, lab_accounts
from tests.scaleout.workers import env_for, keyturn, redis_db, results, unique_site, workers

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]


async def test_two_workers_on_a_postgresql_vault(tmp_path: Path):
    broker = redis_db(8)   # a Redis database of this module's own: the suite runs modules in parallel
    site = unique_site()
    with pg_schema_url("kt_scaleout") as url:
        settings = Settings(home=tmp_path / "home", database_url=url)
        async with running_lab(tmp_path, iosxe=6, meraki_orgs=0, users_per_device=1, ssh=False,
                               faults={"latency": 0.05}) as lab:
            accts = lab_accounts(settings, lab, site)
            env = env_for(settings.home, broker=broker, redis=broker, database_url=url, sites=[site])
            async with workers(env, tmp_path, 2, "--site", site, "--concurrency", "2") as started:
                code, out, err = await keyturn(env, "rotate", "--all", "--json")
                assert code == 0, out + err + "".join(w.output() for w in started)
                pids = {w.proc.pid for w in started if w.proc is not None}
            assert [r["outcome"] for r in results(out)] == ["rotated"] * 6
            reqs = await assert_settled(settings, lab, accts)
            assert sorted(r.deliveries for r in reqs.values()) == [1] * 6
            vault = Vault.open(settings)
            try:
                assert vault.engine.dialect.name == "postgresql"
                journal = Journal(vault.engine)
                writers = {s.worker for r in reqs.values() for s in journal.steps(r.rotation_id)}
            finally:
                vault.close()
            assert writers and all(any(f"pid {p} " in w + " " for p in pids) for w in writers), writers
