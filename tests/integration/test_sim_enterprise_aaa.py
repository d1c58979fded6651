"""AAA switches over real sockets (RESTCONF with httpx, SSH with asyncssh) and the control API that
reports them: TACACS+-first refuses a local user, TACACS+-down lets it in, max-fail locks it, block-for
closes every connection, and the device's `native/aaa` / `native/login` documents are valid YANG.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest

from keyturn.sim.client import IosXeEntry
from keyturn.sim.iosxe_aaa import AaaConfig
from keyturn.sim.iosxe_device import IosXeDevice
from tests.lab_fixtures import RunningLab, running_lab
from tests.yang_validate import YangValidator, load_validator

NATIVE = "/data/Cisco-IOS-XE-native:native"
HEADERS = {"Accept": "application/yang-data+json"}
TACACS_FIRST = ("group tacacs+", "local")


@pytest.fixture(scope="session")
def yang() -> YangValidator:
    return load_validator()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[RunningLab]:
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=2) as running:
        yield running


def configure(
    lab: RunningLab, *, tacacs_reachable: bool = True, **aaa: Any
) -> tuple[IosXeEntry, IosXeDevice]:
    """Give the lab's device an AAA configuration (saved) and its admin a TACACS+ account."""
    entry = lab.state.iosxe[0]
    device = lab.lab.devices[entry.name].device
    device.tacacs.users = {entry.admin.username: entry.admin.password}
    device.tacacs.reachable, device.tacacs.timeout = tacacs_reachable, 0.05
    device.set_aaa(AaaConfig(**aaa))
    device.save()
    return entry, device


def restconf(entry: IosXeEntry, lab: RunningLab, auth: tuple[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=entry.restconf_url, verify=lab.lab._ca.client_context(),  # type: ignore[union-attr]
                             auth=auth, headers=HEADERS, timeout=10.0)


async def ssh_login(entry: IosXeEntry, username: str, password: str) -> bool:
    try:
        async with asyncssh.connect(entry.host, entry.ssh_port, username=username, password=password,
                                    known_hosts=None, preferred_auth="password"):
            return True
    except asyncssh.PermissionDenied:
        return False


async def ssh_run(entry: IosXeEntry, command: str) -> str:
    async with asyncssh.connect(entry.host, entry.ssh_port, username=entry.admin.username,
                                password=entry.admin.password, known_hosts=None,
                                preferred_auth="password") as conn:
        result = await conn.run(command)
        return str(result.stdout)


async def test_tacacs_first_refuses_a_local_user_but_verify_says_stored(lab: RunningLab) -> None:
    entry, _ = configure(lab, new_model=True, login=TACACS_FIRST, exec_authorization=True,
                         http_authentication="aaa")
    user = entry.users[0]
    async with restconf(entry, lab, (user.username, user.password)) as http:
        assert (await http.get(f"{NATIVE}/username")).status_code == 401
    async with restconf(entry, lab, (entry.admin.username, entry.admin.password)) as http:
        assert (await http.get(f"{NATIVE}/username")).status_code == 200
    assert not await ssh_login(entry, user.username, user.password)
    assert await ssh_login(entry, entry.admin.username, entry.admin.password)
    async with lab.control() as ctl:
        assert await ctl.verify_iosxe_detail(entry.name, user.username, user.password) == {
            "ok": True, "locked": False}
        stats = (await ctl.stats())["iosxe"][entry.name]
    # One refused RESTCONF request and at least one refused SSH attempt; /verify counted nothing.
    assert stats["failed_logins"] >= 2
    assert set(stats["failed_logins_by_user"]) == {user.username}
    assert stats["lockouts"] == 0 and stats["locked_users"] == []


async def test_tacacs_down_lets_a_local_user_in_after_the_timeout(lab: RunningLab) -> None:
    entry, device = configure(lab, tacacs_reachable=False, new_model=True, login=TACACS_FIRST,
                              exec_authorization=True, http_authentication="aaa")
    assert device.login_delay("ssh") == 0.05
    user = entry.users[0]
    assert await ssh_login(entry, user.username, user.password)
    async with restconf(entry, lab, (user.username, user.password)) as http:
        assert (await http.get(f"{NATIVE}/username")).status_code == 200
    async with lab.control() as ctl:
        assert (await ctl.stats())["iosxe"][entry.name]["failed_logins"] == 0


async def test_max_fail_locks_then_clear_aaa_local_user_lockout_unlocks(lab: RunningLab) -> None:
    entry, _ = configure(lab, new_model=True, login=("local",), exec_authorization=True, max_fail=2,
                         http_authentication="local")
    user = entry.users[0]
    async with restconf(entry, lab, (user.username, "wrong-password")) as http:
        for _ in range(2):
            assert (await http.get(f"{NATIVE}/username")).status_code == 401
    # Locked: even the right password is refused, over both protocols.
    assert not await ssh_login(entry, user.username, user.password)
    async with restconf(entry, lab, (user.username, user.password)) as http:
        assert (await http.get(f"{NATIVE}/username")).status_code == 401
    async with lab.control() as ctl:
        assert await ctl.verify_iosxe_detail(entry.name, user.username, user.password) == {
            "ok": True, "locked": True}
        stats = (await ctl.stats())["iosxe"][entry.name]
        assert stats["lockouts"] == 1 and stats["locked_users"] == [user.username]
        shown = await ssh_run(entry, "show aaa local user lockout")
        assert shown.splitlines()[0] == "Local-user  Lock time"
        assert shown.splitlines()[1].split()[0] == user.username
        await ssh_run(entry, f"clear aaa local user lockout username {user.username}")
        assert not (await ctl.verify_iosxe_detail(entry.name, user.username, user.password))["locked"]
    assert await ssh_login(entry, user.username, user.password)


async def test_block_for_closes_every_connection_then_lifts(lab: RunningLab) -> None:
    entry, _ = configure(lab, block_for=(1, 2, 60))
    admin = (entry.admin.username, entry.admin.password)
    async with restconf(entry, lab, (entry.admin.username, "wrong")) as http:
        for _ in range(2):
            assert (await http.get(f"{NATIVE}/username")).status_code == 401
    # Quiet mode: no answer at all, for the right credentials too, on both listeners.
    async with restconf(entry, lab, admin) as http:
        with pytest.raises(httpx.TransportError):
            await http.get(f"{NATIVE}/username")
    with pytest.raises((asyncssh.Error, OSError)):
        await ssh_login(entry, *admin)
    async with lab.control() as ctl:
        stats = (await ctl.stats())["iosxe"][entry.name]
        assert stats["quiet_mode_entries"] == 1 and stats["quiet_mode_refusals"] >= 2
        assert stats["failed_logins"] == 2
    for _ in range(50):                       # the one-second quiet period ends
        await asyncio.sleep(0.1)
        if not lab.lab.devices[entry.name].device.quiet_mode():
            break
    async with restconf(entry, lab, admin) as http:
        assert (await http.get(f"{NATIVE}/username")).status_code == 200
    assert await ssh_login(entry, *admin)


async def test_aaa_and_login_subtrees_are_valid_yang(lab: RunningLab, yang: YangValidator) -> None:
    entry = lab.state.iosxe[0]
    admin = (entry.admin.username, entry.admin.password)
    async with restconf(entry, lab, admin) as http:
        assert (await http.get(f"{NATIVE}/aaa")).status_code == 204       # nothing configured
        assert (await http.get(f"{NATIVE}/login")).status_code == 204
    configure(lab, new_model=True, login=TACACS_FIRST, exec_authorization=True, max_fail=3,
              block_for=(120, 5, 60), http_authentication="aaa")
    async with restconf(entry, lab, admin) as http:
        aaa = (await http.get(f"{NATIVE}/aaa")).json()
        login = (await http.get(f"{NATIVE}/login")).json()
        native = (await http.get(NATIVE)).json()
        assert (await http.patch(f"{NATIVE}/aaa", json={})).status_code == 405
    assert aaa["Cisco-IOS-XE-native:aaa"]["Cisco-IOS-XE-aaa:new-model"] == [None]
    assert aaa["Cisco-IOS-XE-native:aaa"]["Cisco-IOS-XE-aaa:authentication"]["login"] == [
        {"name": "default", "a1": {"group": "tacacs+"}, "a2": {"local": [None]}}]
    assert login == {"Cisco-IOS-XE-native:login": {
        "block-config": {"block-for": 120, "attempts": 5, "within": 60}}}
    # The test validator knows `native` documents: validate the subtrees in their place.
    yang.validate({"Cisco-IOS-XE-native:native": {"aaa": aaa["Cisco-IOS-XE-native:aaa"]}})
    yang.validate({"Cisco-IOS-XE-native:native": {"login": login["Cisco-IOS-XE-native:login"]}})
    yang.validate(native)
    assert native["Cisco-IOS-XE-native:native"]["aaa"] == aaa["Cisco-IOS-XE-native:aaa"]
