"""Issue 11's acceptance run, small: `keyturn rotate --all` against an enterprise lab (every role of the
`--profile enterprise` mix: TACACS+-first with max-fail and block-for, TACACS+ down, legacy type-5 users,
privilege 15 landing in `>`, service password-encryption, stock self-signed certificates pinned, legacy
SSH algorithms, realistic latency).

keyturn runs as the real CLI in a subprocess; the lab runs in this process. Afterwards the lab's control
API checks every device's *local* user store (whatever its AAA profile): the vault's new secret is
stored, the initial one is not, nobody is locked out, and keyturn caused no failed login on any device
(they all have an admin credential, so `verify=auto` proves by stored hash where logins go to TACACS+).

`KEYTURN_ENTERPRISE_DEVICES` sets the size (default 40: two blocks of the mix, every role at least twice);
the issue's 200-device run is this test with `KEYTURN_ENTERPRISE_DEVICES=200`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path

from keyturn.config import Settings
from keyturn.sim.client import ControlClient, LabState
from keyturn.sim.lab import Lab, LabOptions, make_plan
from keyturn.sim.onboard import onboard_iosxe
from keyturn.vault import Vault

DEVICES = int(os.environ.get("KEYTURN_ENTERPRISE_DEVICES", "40"))
USERS = 2
ROLES = {"tacacs-first", "tacacs-first-pwenc", "tacacs-down", "legacy-type5", "legacy-type5-ios17",
         "no-exec-authorization"}
# TACACS+ decides logins there: a local user cannot log in, so only the stored hash can prove a secret.
HASH_ROLES = {"tacacs-first", "tacacs-first-pwenc", "tacacs-down"}


async def _keyturn(home: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(home)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keyturn.cli.main", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_enterprise_lab_rotates_every_account_with_no_failed_login(tmp_path: Path) -> None:
    plan = make_plan(iosxe=DEVICES, meraki_orgs=0, users_per_device=USERS, seed=11, profile="enterprise")
    state_file = tmp_path / "lab.json"
    home = tmp_path / "home"
    async with Lab(plan, LabOptions(state_file=state_file)):
        state = LabState.load(state_file)
        roles = {dev.name: dev.profile.get("role") for dev in state.iosxe}
        assert set(roles.values()) >= ROLES, "every enterprise role is represented"

        code, _, err = await _keyturn(home, "init")
        assert code == 0, err
        vault = Vault.open(Settings(home=home))
        try:
            accounts = onboard_iosxe(vault, state)
        finally:
            vault.close()
        initial = {(d.name, u.username): u.password for d in state.iosxe for u in d.users}

        code, out, err = await _keyturn(home, "rotate", "--all", "--json")
        report = json.loads(out)
        assert report["recovered"] == []
        rows = report["results"]
        outcomes = Counter(r["outcome"] for r in rows)
        assert code == 0 and outcomes == {"rotated": len(accounts)}, (outcomes, [
            (r["title"], r["reason"]) for r in rows if r["outcome"] != "rotated"][:5], err[-2000:])

        by_title = {r["title"]: r for r in rows}
        vault = Vault.open(Settings(home=home))
        try:
            async with ControlClient(state.control_url) as ctl:
                for acct in accounts:
                    new = vault.secret(acct.uid)
                    assert new is not None
                    old = initial[(acct.device, acct.username)]
                    now = await ctl.verify_iosxe_detail(acct.device, acct.username, new.reveal())
                    assert now == {"ok": True, "locked": False}, acct
                    assert not await ctl.verify_iosxe(acct.device, acct.username, old), acct
                    proof = by_title[acct.title]["verified_by"]
                    if roles[acct.device] in HASH_ROLES:
                        assert proof == "stored hash", (acct, proof)
                    else:   # the local database decides: a login, after the stored hash agreed
                        assert proof == "login and stored hash", (acct, proof)
                stats = (await ctl.stats())["iosxe"]
        finally:
            vault.close()
        failed = {name: s["failed_logins"] for name, s in stats.items() if s["failed_logins"]}
        locked = {name: s["locked_users"] for name, s in stats.items() if s["locked_users"]}
        assert failed == {} and locked == {}
        assert sum(s["quiet_mode_entries"] for s in stats.values()) == 0
