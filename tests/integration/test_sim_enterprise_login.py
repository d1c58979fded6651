"""What a logged-in client sees on field-true devices, over real sockets: `>` landing without exec
authorization (netmiko `cisco_xe` enables with the secret; RESTCONF refuses with 401), type-5 users that
log in, `service password-encryption` turning type 0 into type 7, and `username` lines without
`privilege 1`. Every RESTCONF document is validated against the IOS XE YANG.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest

from keyturn.cisco_hash import type5_hash, type7_decode, verify_hash
from keyturn.sim.client import IosXeEntry
from keyturn.sim.iosxe_aaa import AaaConfig
from keyturn.sim.iosxe_cli import CliSession
from keyturn.sim.iosxe_device import IosXeDevice
from tests.lab_fixtures import RunningLab, running_lab
from tests.yang_validate import YangValidator, load_validator

NATIVE = "/data/Cisco-IOS-XE-native:native"
HEADERS = {"Accept": "application/yang-data+json", "Content-Type": "application/yang-data+json"}
TYPE5_CLEAR = "Legacy-md5-Pw#1"


@pytest.fixture(scope="session")
def yang() -> YangValidator:
    return load_validator()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[RunningLab]:
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=2) as running:
        yield running


def device_of(lab: RunningLab) -> tuple[IosXeEntry, IosXeDevice]:
    entry = lab.state.iosxe[0]
    return entry, lab.lab.devices[entry.name].device


def restconf(lab: RunningLab, auth: tuple[str, str], yang: YangValidator) -> httpx.AsyncClient:
    async def validate(response: httpx.Response) -> None:
        await response.aread()
        if response.headers.get("content-type") == "application/yang-data+json":
            yang.validate(response.json())

    entry = lab.state.iosxe[0]
    return httpx.AsyncClient(base_url=entry.restconf_url, verify=lab.lab._ca.client_context(),  # type: ignore[union-attr]
                             auth=auth, headers=HEADERS, timeout=10.0,
                             event_hooks={"response": [validate]})


async def ssh_run(entry: IosXeEntry, command: str, user: tuple[str, str] | None = None) -> str:
    username, password = user or (entry.admin.username, entry.admin.password)
    async with asyncssh.connect(entry.host, entry.ssh_port, username=username, password=password,
                                known_hosts=None, preferred_auth="password") as conn:
        return str((await conn.run(command)).stdout)


def netmiko_enable(entry: IosXeEntry) -> tuple[str, str]:
    """(prompt after login, prompt after `enable`) as netmiko `cisco_xe` sees them (blocking)."""
    from netmiko import ConnectHandler

    conn = ConnectHandler(device_type="cisco_xe", host=entry.host, port=entry.ssh_port,
                          username=entry.admin.username, password=entry.admin.password,
                          secret=entry.enable_secret, fast_cli=False)
    try:
        before = conn.find_prompt()
        conn.enable()
        return before, conn.find_prompt()
    finally:
        conn.disconnect()


async def test_without_exec_authorization_privilege_15_lands_in_user_exec(
    lab: RunningLab, yang: YangValidator
) -> None:
    entry, device = device_of(lab)
    device.set_aaa(AaaConfig(new_model=True, login=("local",), http_authentication="local"))
    device.save()
    assert (await ssh_run(entry, "show privilege")).strip() == "Current privilege level is 1"
    before, after = await asyncio.to_thread(netmiko_enable, entry)
    assert (before, after) == (f"{device.hostname}>", f"{device.hostname}#")
    # RESTCONF needs exec authorization to see privilege 15: every local user is refused.
    async with restconf(lab, (entry.admin.username, entry.admin.password), yang) as http:
        assert (await http.get(f"{NATIVE}/username")).status_code == 401
    async with lab.control() as ctl:
        # Authentication succeeded; only authorization failed: no failed login is counted.
        assert (await ctl.stats())["iosxe"][entry.name]["failed_logins"] == 0
    device.set_aaa(AaaConfig(new_model=True, login=("local",), exec_authorization=True,
                             http_authentication="local"))
    assert (await ssh_run(entry, "show privilege")).strip() == "Current privilege level is 15"


async def test_type5_users_log_in_and_show_their_md5_crypt_hash(lab: RunningLab, yang: YangValidator) -> None:
    entry, device = device_of(lab)
    device.set_user("legacy", kind="secret", clear=TYPE5_CLEAR, encryption="5", privilege=15)
    async with restconf(lab, ("legacy", TYPE5_CLEAR), yang) as http:
        doc = (await http.get(f"{NATIVE}/username=legacy")).json()
    (user,) = doc["Cisco-IOS-XE-native:username"]
    assert user["secret"]["encryption"] == "5" and user["secret"]["secret"].startswith("$1$")
    assert verify_hash(TYPE5_CLEAR, user["secret"]["secret"])
    assert "Current privilege level is 15" in await ssh_run(entry, "show privilege", ("legacy", TYPE5_CLEAR))
    line = (await ssh_run(entry, "show running-config | include ^username legacy( |$)")).strip()
    assert line == f"username legacy privilege 15 secret 5 {user['secret']['secret']}"
    # A hash written as type 5 (an imported legacy config) logs in with its clear text.
    stored = type5_hash("Imported-Pw#5", "abcd")
    async with restconf(lab, (entry.admin.username, entry.admin.password), yang) as http:
        body = {"Cisco-IOS-XE-native:username": [
            {"name": "imported", "privilege": 15, "secret": {"encryption": "5", "secret": stored}}]}
        yang.validate(body)
        assert (await http.put(f"{NATIVE}/username=imported", json=body)).status_code == 201
    assert device.authenticate("imported", "Imported-Pw#5", service="http") is not None
    # `algorithm-type md5` on the CLI stores type 5, as IOS does.
    session = CliSession(device, privilege=15)
    for line in ("configure terminal", "username md5user algorithm-type md5 secret Md5-user-Pw1", "end"):
        session.handle(line)
    credential = device.user("md5user").credential  # type: ignore[union-attr]
    assert credential is not None and credential.encryption == "5" and credential.stored.startswith("$1$")


async def test_password_encryption_stores_new_type0_passwords_as_type7(
    lab: RunningLab, yang: YangValidator
) -> None:
    entry, device = device_of(lab)
    device.set_user("plain", kind="password", clear="Plain-Pw#0", privilege=15)
    assert device.user("plain").credential.encryption == "0"  # type: ignore[union-attr]
    device.set_password_encryption(True)     # turning it on encrypts what is already there
    assert device.user("plain").credential.encryption == "7"  # type: ignore[union-attr]
    async with restconf(lab, (entry.admin.username, entry.admin.password), yang) as http:
        body: dict[str, Any] = {"Cisco-IOS-XE-native:username": [
            {"name": "fresh", "privilege": 15, "password": {"encryption": "0", "password": "Fresh-Pw#0"}}]}
        assert (await http.put(f"{NATIVE}/username=fresh", json=body)).status_code == 201
        entry_doc = (await http.get(f"{NATIVE}/username=fresh")).json()["Cisco-IOS-XE-native:username"][0]
        native = (await http.get(NATIVE)).json()
    assert entry_doc["password"]["encryption"] == "7"
    assert type7_decode(entry_doc["password"]["password"]) == "Fresh-Pw#0"
    assert native["Cisco-IOS-XE-native:native"]["service"] == {"password-encryption": [None]}
    shown = await ssh_run(entry, "show running-config | include ^username fresh( |$)|^service password")
    assert shown.splitlines()[0] == "service password-encryption"
    assert shown.splitlines()[1].startswith("username fresh privilege 15 password 7 ")
    assert device.authenticate("fresh", "Fresh-Pw#0") is not None


async def test_real_ios_omits_privilege_1_and_keeps_privilege_15(lab: RunningLab) -> None:
    entry, device = device_of(lab)
    device.set_user("viewer", kind="secret", clear="V1ewer-secret", privilege=1)
    device.save()
    assert "username viewer privilege 1 secret 9 " in await ssh_run(entry, "show running-config")
    device.omit_privilege_1 = True
    lines = (await ssh_run(entry, "show running-config | include ^username")).splitlines()
    assert any(ln.startswith("username viewer secret 9 $9$") for ln in lines)
    assert any(ln.startswith(f"username {entry.admin.username} privilege 15 secret 9 ") for ln in lines)
    assert not device.unsaved_changes()
