"""`--profile enterprise`: 20 devices already show every role, each behaving as its profile says over
real sockets; the state file names each device's profile and fingerprints; the control API changes a
profile at run time; `keyturn sim lab` takes the realism flags (and refuses bad ones in one line)."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import httpx
import pytest
from typer.testing import CliRunner

from keyturn.cli.sim import app
from keyturn.errors import SimulatorError
from keyturn.sim.client import IosXeEntry, LabState
from keyturn.sim.iosxe_profile import MIX_BLOCK
from keyturn.sim.lab import Lab, LabOptions, make_plan
from tests.lab_fixtures import RunningLab

USERS = "/data/Cisco-IOS-XE-native:native/username"
PROFILE_KEYS = {"aaa", "max_fail", "block_for", "exec_authorization", "password_encryption", "cert",
                "cert_fingerprint", "ssh_profile", "ssh_host_key_fingerprint", "latency", "role"}


@pytest.fixture
async def enterprise(tmp_path: Path) -> AsyncIterator[RunningLab]:
    plan = make_plan(iosxe=MIX_BLOCK, meraki_orgs=0, users_per_device=2, seed=31, profile="enterprise")
    state_file = tmp_path / "lab.json"
    lab = Lab(plan, LabOptions(state_file=state_file, profile={"latency": 0}))
    await lab.start()
    try:
        yield RunningLab(lab=lab, state=LabState.load(state_file), state_file=state_file)
    finally:
        await lab.stop()


def by_role(lab: RunningLab, role: str) -> IosXeEntry:
    return next(d for d in lab.state.iosxe if d.profile["role"] == role)


def restconf(entry: IosXeEntry, auth: tuple[str, str]) -> httpx.AsyncClient:
    # Stock IOS certificates chain to nothing and name no host: a client can only pin them.
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return httpx.AsyncClient(base_url=entry.restconf_url, verify=ctx, auth=auth, timeout=10.0,
                             headers={"Accept": "application/yang-data+json"})


async def ssh_run(entry: IosXeEntry, username: str, password: str, command: str) -> str | None:
    """The command's output, or None when the login is refused."""
    try:
        async with asyncssh.connect(entry.host, entry.ssh_port, username=username, password=password,
                                    known_hosts=None, preferred_auth="password") as conn:
            return str((await conn.run(command)).stdout)
    except asyncssh.PermissionDenied:
        return None


async def test_state_file_names_every_device_profile(enterprise: RunningLab) -> None:
    raw = json.loads(enterprise.state_file.read_text())
    assert raw["profile"] == "enterprise"
    roles = {d["profile"]["role"] for d in raw["iosxe"]}
    assert roles == {"tacacs-first", "tacacs-first-pwenc", "tacacs-down", "legacy-type5",
                     "legacy-type5-ios17", "no-exec-authorization"}
    for dev in raw["iosxe"]:
        assert set(dev) >= {"name", "host", "restconf_port", "ssh_port", "admin", "enable_secret", "users"}
        assert set(dev["profile"]) >= PROFILE_KEYS
        assert len(dev["profile"]["cert_fingerprint"]) == 64
        assert dev["profile"]["ssh_host_key_fingerprint"].startswith("SHA256:")
    assert LabState.load(enterprise.state_file).to_dict() == raw


async def test_every_role_behaves_as_its_profile_says(enterprise: RunningLab) -> None:
    first, down = by_role(enterprise, "tacacs-first"), by_role(enterprise, "tacacs-down")
    legacy, no_exec = by_role(enterprise, "legacy-type5"), by_role(enterprise, "no-exec-authorization")
    # TACACS+ first: the admin (known to the server) gets in, a local user does not.
    user = first.users[0]
    async with restconf(first, (first.admin.username, first.admin.password)) as http:
        assert (await http.get(USERS)).status_code == 200
    async with restconf(first, (user.username, user.password)) as http:
        assert (await http.get(USERS)).status_code == 401
    # TACACS+ down: the local database decides.
    async with restconf(down, (down.users[0].username, down.users[0].password)) as http:
        assert (await http.get(USERS)).status_code == 200
    # Legacy: type-5 users log in over the legacy SSH algorithm set.
    type5 = next(u for u in legacy.users if u.encryption == "5")
    assert "level is 15" in (await ssh_run(legacy, type5.username, type5.password, "show privilege") or "")
    line = await ssh_run(legacy, legacy.admin.username, legacy.admin.password,
                         f"show running-config | include ^username {type5.username}( |$)")
    assert line is not None and f"username {type5.username} privilege 15 secret 5 $1$" in line
    # No exec authorization: `>` over SSH, 401 over RESTCONF.
    assert "level is 1\r" in (await ssh_run(no_exec, no_exec.admin.username, no_exec.admin.password,
                                            "show privilege") or "")
    async with restconf(no_exec, (no_exec.admin.username, no_exec.admin.password)) as http:
        assert (await http.get(USERS)).status_code == 401
    async with enterprise.control() as ctl:
        stats = (await ctl.stats())["iosxe"]
        assert await ctl.verify_iosxe(first.name, user.username, user.password)
    assert stats[first.name]["failed_logins_by_user"] == {user.username: 1}
    assert sum(s["failed_logins"] for s in stats.values()) == 1
    assert all(s["lockouts"] == 0 and s["quiet_mode_entries"] == 0 for s in stats.values())


async def test_control_api_changes_a_profile_at_run_time(enterprise: RunningLab) -> None:
    first = by_role(enterprise, "tacacs-first")
    user = first.users[0]
    async with enterprise.control() as ctl:
        changed = await ctl.set_profile(first.name, {"aaa": "tacacs-down", "tacacs_timeout": 0})
        assert changed["aaa"] == "tacacs-down"
        assert changed["cert_fingerprint"] == first.profile["cert_fingerprint"]
        async with restconf(first, (user.username, user.password)) as http:
            assert (await http.get(USERS)).status_code == 200
        with pytest.raises(SimulatorError, match="start-time"):
            await ctl.set_profile(first.name, {"cert": "lab-ca"})
        with pytest.raises(SimulatorError, match="unknown profile switch"):
            await ctl.set_profile(first.name, {"tacacs": True})
        assert (await ctl.profile(first.name))["aaa"] == "tacacs-down"
        # The profile survives a reset of credentials and counters, and a reload (it is saved).
        await ctl.reset()
        await ctl.reboot(first.name)
        assert (await ctl.profile(first.name))["aaa"] == "tacacs-down"
    device = enterprise.lab.devices[first.name].device
    assert not device.tacacs.reachable and device.authenticate(user.username, user.password) is not None


def test_sim_lab_flags_are_checked_in_one_line() -> None:
    runner = CliRunner()
    for args, words in ((["--aaa", "radius"], "aaa"), (["--block-for", "1,2"], "block_for"),
                        (["--exec-authorization", "maybe"], "exec_authorization"),
                        (["--profile", "campus"], "--profile")):
        result = runner.invoke(app, ["lab", "--iosxe", "1", "--meraki-orgs", "0", *args])
        assert result.exit_code == 1
        assert words in result.output and "Traceback" not in result.output


def test_sim_lab_enterprise_subprocess_with_flags(tmp_path: Path) -> None:
    state_file = tmp_path / "lab.json"
    cmd = [sys.executable, "-m", "keyturn.cli.sim", "lab", "--profile", "enterprise", "--iosxe", "20",
           "--meraki-orgs", "0", "--seed", "5", "--latency", "0", "--block-for", "60,3,30",
           "--state-file", str(state_file), "--quiet"]
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            deadline = time.monotonic() + 60
            while not state_file.exists():
                assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "lab state file never appeared"
                time.sleep(0.05)  # polling a file another process writes; there is no event to wait on
            state = LabState.load(state_file)
            assert len(state.iosxe) == 20
            assert all(d.profile["block_for"] == [60, 3, 30] for d in state.iosxe)     # the flag wins
            assert all(d.profile["latency"]["restconf"] == 0 for d in state.iosxe)
            assert {d.profile["aaa"] for d in state.iosxe} == {"local", "tacacs-first", "tacacs-down"}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
