"""`keyturn rotate` killed (os._exit, like kill -9) at every step boundary, then `keyturn recover`:
the vault's current secret must log in on the simulated device every time, nothing left pending.

The lab runs in this test's event loop; the CLI runs as a real subprocess against a vault on disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.engine.hooks import KILL_ENV, KILL_EXIT_CODE
from keyturn.engine.outcome import STEPS
from keyturn.vault import Vault
from tests.integration.engine_lab import LabAccount, add_iosxe, add_meraki
from tests.lab_fixtures import running_lab

ROOT = Path(__file__).resolve().parents[2]
KINDS = ["iosxe-restconf", "iosxe-ssh", "meraki-auth-user"]


async def keyturn(home: Path, *args: str, kill_at: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update({"KEYTURN_HOME": str(home), "PYTHONPATH": str(ROOT / "src")})
    if kill_at:
        env[KILL_ENV] = kill_at
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keyturn.cli.main", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


def accounts_for(kind: str, vault: Vault, state) -> list[LabAccount]:
    if kind == "meraki-auth-user":
        return add_meraki(vault, state, networks=1, users=1)
    return add_iosxe(vault, state, kind, devices=1, users=1)


def target_available(kind: str) -> None:
    from keyturn.errors import KeyturnError
    from keyturn.targets.registry import target_class
    try:
        target_class(kind)
    except (KeyturnError, ImportError) as exc:
        pytest.skip(f"target {kind} not available yet: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("step", [s.value for s in STEPS])
async def test_kill_at_every_step_then_recover(tmp_path: Path, kind: str, step: str):
    target_available(kind)
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=1, users_per_network=1,
                           users_per_device=1) as lab:
        vault = Vault.init(Settings(home=home))
        try:
            acct = accounts_for(kind, vault, lab.state)[0]
        finally:
            vault.close()
        code, _, err = await keyturn(home, "rotate", "--", acct.uid, kill_at=step)
        assert code == KILL_EXIT_CODE, err
        code, out, err = await keyturn(home, "recover", "--json")
        assert code == 0, out + err
        assert all(r["outcome"] not in ("unverified", "needs_attention") for r in json.loads(out))
        vault = Vault.open(Settings(home=home))
        try:
            assert "pending" not in [str(v.state) for v in vault.versions(acct.uid)]
            async with lab.control() as ctl:
                assert await acct.current_logs_in(vault, ctl), f"killed at {step}: vault secret is wrong"
        finally:
            vault.close()


async def test_reboot_before_save_is_recovered_backward(tmp_path: Path):
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1) as lab:
        vault = Vault.init(Settings(home=home))
        try:
            acct = add_iosxe(vault, lab.state, "iosxe-restconf", devices=1, users=1)[0]
            old = vault.secret(acct.uid).reveal()
        finally:
            vault.close()
        code, _, err = await keyturn(home, "rotate", "--", acct.uid, kill_at="apply")   # changed, never saved
        assert code == KILL_EXIT_CODE, err
        async with lab.control() as ctl:
            await ctl.reboot(acct.device)                                          # running-config lost
            assert await acct.logs_in(ctl, old)
        code, out, err = await keyturn(home, "recover", "--json")
        assert code == 0, out + err
        assert [r["outcome"] for r in json.loads(out)] == ["failed"]
        vault = Vault.open(Settings(home=home))
        try:
            assert vault.secret(acct.uid).reveal() == old
            assert [str(v.state) for v in vault.versions(acct.uid)] == ["failed", "current"]
        finally:
            vault.close()


async def test_rotate_cli_summary_history_and_log(tmp_path: Path):
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=2) as lab:
        vault = Vault.init(Settings(home=home))
        try:
            accts = add_iosxe(vault, lab.state, "iosxe-restconf", devices=1, users=2)
        finally:
            vault.close()
        code, out, err = await keyturn(home, "rotate", "--filter", "target=iosxe-restconf,title~sw0001")
        assert code == 0, out + err
        assert "2 rotated" in out and "rotated and verified" in out
        code, out, err = await keyturn(home, "history", "--json", "--", accts[0].uid)
        assert code == 0, err
        hist = json.loads(out)
        assert [r["outcome"] for r in hist["rotations"]] == ["rotated"]
        assert [v["state"] for v in hist["versions"]] == ["current", "previous"]
        code, out, err = await keyturn(home, "rotation", "log", hist["rotations"][0]["id"][:10])
        assert code == 0, err
        assert [line.split()[1] for line in out.splitlines()[2:12]] == [s.value for s in STEPS]
        code, out, err = await keyturn(home, "rotate", "--all", "--", accts[0].uid)
        assert code == 2 and "not a mix" in err
