"""`keyturn serve` with a broker: the API's rotations run on workers; `keyturn status` and `/metrics`
show a site whose requests wait with no live worker, then drain once one starts."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import httpx
import pytest

from keyturn.config import Settings
from keyturn.vault import Vault
from tests.integration.engine_lab import add_iosxe
from tests.lab_fixtures import running_lab
from tests.scaleout.workers import ROOT, env_for, keyturn, redis_db, unique_site, workers

pytestmark = pytest.mark.asyncio


async def _serve(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keyturn.cli.main", "serve", "--port", "0", "--grace", "5", "--no-scheduler",
        env={**env, "KEYTURN_LOG_LEVEL": "INFO"}, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), timeout=60)
        assert line, "serve exited before listening"
        msg = json.loads(line).get("msg", "")
        if "listening on" in msg:
            return proc, msg.rsplit(" ", 1)[1]


async def test_api_rotations_wait_for_a_worker_of_their_site_then_run(tmp_path: Path):
    home = tmp_path / "home"
    site = unique_site()
    broker = redis_db(12)
    async with running_lab(tmp_path, iosxe=2, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        vault = Vault.init(Settings(home=home))
        try:
            accts = add_iosxe(vault, lab.state, "iosxe-restconf")
            for a in accts:
                vault.set_meta(vault.meta(a.uid)[1]["rotation"]["resource"], "site", site)
        finally:
            vault.close()
        env = env_for(home, broker=broker, redis=broker, sites=[site])
        code, token, err = await keyturn(env, "token", "create", "--role", "admin", "--name", "t",
                                         "--expires", "1d")
        assert code == 0, err
        proc, url = await _serve(env)
        try:
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token.strip()}"},
                                         timeout=30) as api:
                resp = await api.post("/rotations", json={"records": [a.uid for a in accts]})
                assert resp.status_code == 202, resp.text
                ids = [r["id"] for r in resp.json()["rotations"]]
                # No worker for the site yet: the requests wait, visibly.
                for _ in range(50):
                    code, out, err = await keyturn(env, "status", "--json")
                    if json.loads(out)["stuck_sites"] == [site]:
                        break
                    await asyncio.sleep(0.2)
                assert code == 1, out + err
                row = next(s for s in json.loads(out)["sites"] if s["site"] == site)
                assert row["queued"] == 2 and row["workers"] == 0
                metrics = (await api.get("/metrics")).text
                assert re.search(rf'keyturn_site_queue_depth{{site="{site}"}} 2\.0', metrics), metrics
                async with workers(env, tmp_path, 1, "--site", site, "--concurrency", "2") as (worker,):
                    outcomes: dict[str, str] = {}
                    for _ in range(300):
                        for rid in ids:
                            body = (await api.get(f"/rotations/{rid}")).json()
                            if body.get("outcome"):
                                outcomes[rid] = body["outcome"]
                        if len(outcomes) == len(ids):
                            break
                        await asyncio.sleep(0.2)
                    assert outcomes == dict.fromkeys(ids, "rotated"), worker.output()
                    code, out, _ = await keyturn(env, "status", "--json")
                    assert code == 0 and json.loads(out)["stuck_sites"] == []
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=30)
        vault = Vault.open(Settings(home=home))
        try:
            async with lab.control() as ctl:
                for a in accts:
                    assert await a.current_logs_in(vault, ctl)
        finally:
            vault.close()
