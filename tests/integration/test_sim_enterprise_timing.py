"""Save and sync windows over real sockets: RESTCONF writes get 409 `lock-denied` while save-config or
`write memory` runs and for `sync_window` seconds after a CLI change (reference §4), and the realistic
timing profile reaches the front-ends (checked on the seeded plan, not timed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest

from keyturn.sim.client import IosXeEntry
from keyturn.sim.iosxe_profile import REALISTIC_RANGES, DeviceProfile
from tests.lab_fixtures import RunningLab, running_lab
from tests.yang_validate import YangValidator, load_validator

USERS = "/data/Cisco-IOS-XE-native:native/username"
SAVE = "/operations/cisco-ia:save-config"
HEADERS = {"Accept": "application/yang-data+json", "Content-Type": "application/yang-data+json"}


@pytest.fixture(scope="session")
def yang() -> YangValidator:
    return load_validator()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[RunningLab]:
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1) as running:
        yield running


def restconf(lab: RunningLab, yang: YangValidator) -> httpx.AsyncClient:
    async def validate(response: httpx.Response) -> None:
        await response.aread()
        if response.headers.get("content-type") == "application/yang-data+json":
            yang.validate(response.json())

    entry = lab.state.iosxe[0]
    return httpx.AsyncClient(base_url=entry.restconf_url, verify=lab.lab._ca.client_context(),  # type: ignore[union-attr]
                             auth=(entry.admin.username, entry.admin.password), headers=HEADERS,
                             timeout=30.0, event_hooks={"response": [validate]})


def patch_body(entry: IosXeEntry, password: str) -> dict[str, Any]:
    user = entry.users[0]
    return {"Cisco-IOS-XE-native:username": [
        {"name": user.username, "secret": {"encryption": "0", "secret": password}}]}


def lock_denied(resp: httpx.Response) -> bool:
    if resp.status_code != 409:
        return False
    (error,) = resp.json()["ietf-restconf:errors"]["error"]
    return bool(error["error-tag"] == "lock-denied")


async def cli(entry: IosXeEntry, *lines: str) -> str:
    """Type `lines` into an interactive vty session, then `exit`; the transcript."""
    async with asyncssh.connect(entry.host, entry.ssh_port, username=entry.admin.username,
                                password=entry.admin.password, known_hosts=None,
                                preferred_auth="password") as conn:
        proc = await conn.create_process(term_type="vt100")
        proc.stdin.write("".join(f"{ln}\r" for ln in (*lines, "exit")))
        return str(await asyncio.wait_for(proc.stdout.read(), 30))


async def test_writes_get_409_while_save_config_runs(lab: RunningLab, yang: YangValidator) -> None:
    entry = lab.state.iosxe[0]
    async with lab.control() as ctl:
        await ctl.set_profile(entry.name, {"save_delay": 1.0})
    async with restconf(lab, yang) as http:
        save = asyncio.create_task(http.post(SAVE))
        while lab.lab.devices[entry.name].device.write_blocked() is None:   # the save has begun
            await asyncio.sleep(0.01)
        assert lock_denied(await http.patch(f"{USERS}={entry.users[0].username}",
                                            json=patch_body(entry, "During-Save-Pw1")))
        assert (await save).json() == {"cisco-ia:output": {"result": "Save running-config successful"}}
        assert (await http.patch(f"{USERS}={entry.users[0].username}",
                                 json=patch_body(entry, "After-Save-Pw1"))).status_code == 204


async def test_writes_get_409_while_write_memory_runs(lab: RunningLab, yang: YangValidator) -> None:
    entry = lab.state.iosxe[0]
    async with lab.control() as ctl:
        await ctl.set_profile(entry.name, {"latency": {"write_memory": 1.0}})
    device = lab.lab.devices[entry.name].device
    saves = device.save_count
    writing = asyncio.create_task(cli(entry, "write memory"))
    async with restconf(lab, yang) as http:
        while device.save_count == saves:
            await asyncio.sleep(0.01)
        assert lock_denied(await http.patch(f"{USERS}={entry.users[0].username}",
                                            json=patch_body(entry, "During-Write-Pw1")))
        assert "[OK]" in await writing


async def test_writes_get_409_in_the_sync_window_after_a_cli_change(
    lab: RunningLab, yang: YangValidator
) -> None:
    entry = lab.state.iosxe[0]
    async with lab.control() as ctl:
        await ctl.set_profile(entry.name, {"sync_window": 60})
        await cli(entry, "configure terminal", "username cliuser privilege 15 secret 0 Cli-user-Pw1", "end")
        async with restconf(lab, yang) as http:
            assert (await http.get(USERS)).status_code == 200          # reads are not refused
            assert lock_denied(await http.patch(f"{USERS}={entry.users[0].username}",
                                                json=patch_body(entry, "In-Sync-Pw1")))
            await ctl.set_profile(entry.name, {"sync_window": 0})    # the re-sync is over
            assert (await http.patch(f"{USERS}={entry.users[0].username}",
                                     json=patch_body(entry, "After-Sync-Pw1"))).status_code == 204


async def test_realistic_latency_reaches_every_front_end(tmp_path: Path) -> None:
    async with running_lab(tmp_path, iosxe=2, meraki_orgs=0, seed=21, profile={"latency": "realistic"},
                           restconf=True) as running:
        for entry in running.state.iosxe:
            profile = DeviceProfile.from_dict(entry.profile)
            for name, (lo, hi) in REALISTIC_RANGES.items():
                assert lo <= getattr(profile.latency, name) <= hi
            dev = running.lab.devices[entry.name]
            assert dev.restconf is not None and dev.ssh is not None
            assert dev.restconf.request_latency == profile.latency.restconf
            assert dev.restconf.save_delay == profile.latency.save_config == profile.save_delay
            assert (dev.ssh.login_latency, dev.ssh.write_latency) == (profile.latency.ssh_login,
                                                                      profile.latency.write_memory)
            assert dev.device.sync_window == profile.sync_window >= 2.0
        first = [d.profile["latency"] for d in running.state.iosxe]
        async with running.control() as ctl:
            assert (await ctl.profile(running.state.iosxe[0].name))["latency"] == first[0]
            fast = await ctl.set_profile(None, {"latency": 0})
        assert all(p["latency"]["restconf"] == 0 and p["save_delay"] == 0.2 for p in fast)
        assert running.lab.devices[running.state.iosxe[0].name].restconf.request_latency == 0  # type: ignore[union-attr]
    assert first[0] != first[1]   # drawn per device, from the seed
