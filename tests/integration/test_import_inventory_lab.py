"""`keyturn import inventory` against a simulator lab, then `keyturn rotate --all`: every account imported
from a 200-device Ansible inventory and from a Nornir SimpleInventory rotates, and the vault's new secret
is the one each device stores.

The lab runs in this test's event loop; keyturn runs as real subprocesses against a vault on disk. The
inventories are written from the lab's state file as a person would write them from theirs: addresses,
ports, the admin credential and enable secret, the lab CA and SSH host key to trust.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from keyturn.config import Settings
from keyturn.sim.client import IosXeEntry, LabState
from keyturn.vault import Vault
from tests.lab_fixtures import running_lab

ROOT = Path(__file__).resolve().parents[2]


async def keyturn(home: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update({"KEYTURN_HOME": str(home), "PYTHONPATH": str(ROOT / "src")})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keyturn.cli.main", *args, env=env, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), timeout=500)
    return proc.returncode or 0, out.decode(), err.decode()


def host_key(state: LabState, dev: IosXeEntry) -> str:
    return str(dev.profile.get("ssh_host_key_fingerprint") or state.extra["ssh_host_key_fingerprint"])


def ansible_inventory(state: LabState) -> dict[str, object]:
    """Even devices reached over RESTCONF (httpapi: ansible_port is HTTPS), odd ones over SSH (network_cli:
    ansible_port is SSH); user passwords unknown, so the admin sets the first one."""
    groups: dict[str, dict[str, object]] = {
        "restconf": {"vars": {"ansible_connection": "ansible.netcommon.httpapi"}, "hosts": {}},
        "cli": {"vars": {"ansible_connection": "ansible.netcommon.network_cli"}, "hosts": {}}}
    for i, dev in enumerate(state.iosxe):
        https = i % 2 == 0
        hv: dict[str, object] = {
            "ansible_host": dev.host, "ansible_port": dev.restconf_port if https else dev.ssh_port,
            "ansible_password": dev.admin.password, "ansible_become_password": dev.enable_secret,
            "keyturn_users": [u.username for u in dev.users],
            "keyturn_host_key_fingerprint": host_key(state, dev)}
        hv["keyturn_ssh_port" if https else "keyturn_port"] = dev.ssh_port if https else dev.restconf_port
        groups["restconf" if https else "cli"]["hosts"][dev.name] = hv  # type: ignore[index]
    return {"all": {"vars": {"ansible_network_os": "cisco.ios.ios",
                             "ansible_user": state.iosxe[0].admin.username,
                             "keyturn_ca_bundle": state.ca_cert, "keyturn_schedule": "every 30d"},
                    "children": {"switches": {"children": groups}}}}


async def rotate_all_and_check(home: Path, lab, expected: int) -> None:
    code, out, err = await keyturn(home, "rotate", "--all", "--json")
    assert code == 0, err[-2000:]
    results = json.loads(out)["results"]
    assert len(results) == expected
    failed = [r for r in results if r["outcome"] != "rotated"]
    assert failed == [], failed[:3]
    vault = Vault.open(Settings(home=home))
    try:
        async with lab.control() as ctl:
            for dev in lab.state.iosxe:
                for user in dev.users:
                    secret = vault.secret(vault.resolve(f"{user.username} @ {dev.name}"))
                    assert secret is not None and secret.reveal() != user.password
                    assert await ctl.verify_iosxe(dev.name, user.username, secret.reveal()), dev.name
    finally:
        vault.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_200_device_ansible_inventory_imports_and_every_account_rotates(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=200, meraki_orgs=0, users_per_device=1) as lab:
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(yaml.safe_dump(ansible_inventory(lab.state)))
        assert (await keyturn(home, "init"))[0] == 0
        code, out, err = await keyturn(home, "import", "inventory", str(inventory), "--dry-run", "--json")
        assert code == 0, err
        assert json.loads(out)["counts"]["user"] == {"create": 200, "update": 0, "unchanged": 0}
        assert "holds secrets in clear" in err
        code, out, err = await keyturn(home, "import", "inventory", str(inventory))
        assert code == 0, err
        assert "imported 200 devices" in out
        assert "profiles: 200 create" in out and "schedules: 200 create" in out
        code, out, err = await keyturn(home, "import", "inventory", str(inventory), "--json")
        assert code == 0, err
        assert {c["action"] for c in json.loads(out)["changes"]} == {"unchanged"}
        await rotate_all_and_check(home, lab, 200)


NORNIR_GROUPS = """\
ios:
  platform: cisco_iosxe
  username: {admin}
  data:
    keyturn_ca_bundle: {ca}
    keyturn_target: iosxe-ssh
"""


async def test_a_nornir_inventory_imports_and_every_account_rotates(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=3, meraki_orgs=0, users_per_device=2) as lab:
        state = lab.state
        hosts = {}
        for i, dev in enumerate(state.iosxe):
            restconf = i == 0
            data: dict[str, object] = {
                "keyturn_users": [{"login": u.username, "password": u.password} for u in dev.users],
                "keyturn_enable_secret": dev.enable_secret,
                "keyturn_host_key_fingerprint": host_key(state, dev)}
            if restconf:
                data.update(keyturn_target="iosxe-restconf", keyturn_ssh_port=dev.ssh_port)
            else:
                data["keyturn_port"] = dev.restconf_port
            hosts[dev.name] = {"hostname": dev.host, "port": dev.restconf_port if restconf else dev.ssh_port,
                               "password": dev.admin.password, "groups": ["ios"], "data": data}
        (tmp_path / "nornir").mkdir()
        (tmp_path / "nornir" / "hosts.yaml").write_text(yaml.safe_dump(hosts))
        (tmp_path / "nornir" / "groups.yaml").write_text(
            NORNIR_GROUPS.format(admin=state.iosxe[0].admin.username, ca=state.ca_cert))
        (tmp_path / "nornir" / "defaults.yaml").write_text("data: {}\n")
        assert (await keyturn(home, "init"))[0] == 0
        code, out, err = await keyturn(home, "import", "inventory", str(tmp_path / "nornir" / "hosts.yaml"))
        assert code == 0, err
        assert "(nornir)" in out and "users: 6 create" in out
        await rotate_all_and_check(home, lab, 6)


async def test_a_bad_inventory_imports_nothing_and_lists_every_problem(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert (await keyturn(home, "init"))[0] == 0
    bad = tmp_path / "fleet.csv"
    bad.write_text("device,host,target,admin_login,admin_password,user,schedule\n"
                   "sw1,10.0.0.1,iosxe-restconf,admin,pw,netops,every 30d\n"
                   "sw2,10.0.0.2,junos,admin,pw,netops,\n"
                   "sw3,10.0.0.3:,iosxe-ssh,admin,pw,netops,whenever\n")
    code, out, err = await keyturn(home, "import", "inventory", str(bad))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert "error: 3 problems in" in err and "nothing was imported" in err
    assert [ln.strip().split(": ", 1)[0].rsplit("/", 1)[-1] for ln in lines if ln.startswith("  ")] == [
        "fleet.csv:3", "fleet.csv:4", "fleet.csv:4"]
    code, out, _err = await keyturn(home, "record", "list", "--json")
    assert code == 0 and [r["title"] for r in json.loads(out)] == ["Default PAM Configuration"]
