"""The lab control API over a real socket: verify, faults, drift, reboot, reset, stats."""

from __future__ import annotations

import ssl

import httpx
import pytest

from keyturn.errors import SimulatorError
from keyturn.sim.client import IosXeEntry
from tests.lab_fixtures import RunningLab, small_lab_fixture

small_lab = small_lab_fixture

USERS_PATH = "/data/Cisco-IOS-XE-native:native/username"
JSON = "application/yang-data+json"


def _restconf(dev: IosXeEntry, ca_cert: str) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=ca_cert)
    return httpx.AsyncClient(base_url=dev.restconf_url, verify=ctx, timeout=10,
                             auth=(dev.admin.username, dev.admin.password),
                             headers={"Accept": JSON, "Content-Type": JSON})


async def test_sim_lab_verify_right_and_wrong_password(small_lab: RunningLab) -> None:
    dev = small_lab.state.iosxe[0]
    user = dev.users[0]
    async with small_lab.control() as ctl:
        assert await ctl.verify_iosxe(dev.name, user.username, user.password) is True
        assert await ctl.verify_iosxe(dev.name, user.username, user.password + "x") is False
        assert await ctl.verify_iosxe(dev.name, "nobody", user.password) is False
        net = small_lab.state.meraki.orgs[0].networks[0]  # type: ignore[union-attr]
        assert await ctl.verify_meraki(net.id, net.users[1].email, net.users[1].password) is True
        assert await ctl.verify_meraki(net.id, net.users[1].email, net.users[0].password) is False
        with pytest.raises(SimulatorError, match="404"):
            await ctl.verify_iosxe("sw9999", user.username, user.password)


async def test_sim_lab_fault_is_seen_on_restconf(small_lab: RunningLab) -> None:
    dev = small_lab.state.iosxe[2]
    async with _restconf(dev, small_lab.state.ca_cert) as rc, small_lab.control() as ctl:
        assert (await rc.get(USERS_PATH)).status_code == 200
        snap = await ctl.set_faults(dev.name, {"error_rate": 1.0})
        assert snap["error_rate"] == 1.0
        assert (await rc.get(USERS_PATH)).status_code == 503
        listed = {d["name"]: d for d in await ctl.devices()}
        assert listed[dev.name]["faults"]["error_rate"] == 1.0
        assert listed["sw0001"]["faults"]["error_rate"] == 0.0
        await ctl.reset(faults_only=True)
        assert (await rc.get(USERS_PATH)).status_code == 200


async def test_sim_lab_unknown_fault_switch_is_400_naming_it(small_lab: RunningLab) -> None:
    async with httpx.AsyncClient(base_url=small_lab.state.control_url) as http:
        resp = await http.post("/faults", json={"kind": "iosxe", "device": "sw0001",
                                                "faults": {"latnecy": 1}})
        assert resp.status_code == 400
        assert "latnecy" in resp.json()["error"]
        org = small_lab.state.meraki.orgs[0].id  # type: ignore[union-attr]
        resp = await http.post("/faults", json={"kind": "meraki", "org": org, "faults": {"bogus_switch": 1}})
        assert resp.status_code == 400
        assert "bogus_switch" in resp.json()["error"]
        storm = {"kind": "meraki", "org": org, "faults": {"rate_limit_storm": 2}}
        resp = await http.post("/faults", json=storm)
        assert resp.status_code == 200 and resp.json()["rate_limit_storm"] == 2
        resp = await http.post("/faults", content=b"not json")
        assert resp.status_code == 400


async def test_sim_lab_drift_then_verify(small_lab: RunningLab) -> None:
    dev = small_lab.state.iosxe[0]
    user = dev.users[1]
    net = small_lab.state.meraki.orgs[0].networks[0]  # type: ignore[union-attr]
    async with small_lab.control() as ctl:
        await ctl.drift_iosxe(dev.name, user.username, "Drifted-Passw0rd!")
        assert await ctl.verify_iosxe(dev.name, user.username, "Drifted-Passw0rd!")
        assert not await ctl.verify_iosxe(dev.name, user.username, user.password)
        await ctl.drift_meraki(net.id, net.users[0].email, "Meraki-Drift-99")
        assert await ctl.verify_meraki(net.id, net.users[0].email, "Meraki-Drift-99")
        assert not await ctl.verify_meraki(net.id, net.users[0].email, net.users[0].password)
        # A drift is saved like a console change: it survives a reboot.
        await ctl.reboot(dev.name)
        assert await ctl.verify_iosxe(dev.name, user.username, "Drifted-Passw0rd!")
        # Reset restores the initial credentials everywhere.
        await ctl.reset()
        assert await ctl.verify_iosxe(dev.name, user.username, user.password)
        assert await ctl.verify_meraki(net.id, net.users[0].email, net.users[0].password)


async def test_sim_lab_reboot_loses_unsaved_restconf_change(small_lab: RunningLab) -> None:
    dev = small_lab.state.iosxe[1]
    user = dev.users[0]
    body = {"Cisco-IOS-XE-native:native": {"username": [
        {"name": user.username, "secret": {"encryption": "0", "secret": "Unsaved-New-Pass1"}}]}}
    async with _restconf(dev, small_lab.state.ca_cert) as rc, small_lab.control() as ctl:
        resp = await rc.patch("/data/Cisco-IOS-XE-native:native", json=body)
        assert resp.status_code in (200, 204), resp.text
        assert await ctl.verify_iosxe(dev.name, user.username, "Unsaved-New-Pass1")
        assert next(d for d in await ctl.devices() if d["name"] == dev.name)["unsaved_changes"]
        stats = await ctl.stats()
        assert stats["iosxe"][dev.name]["changes"] >= 1
        await ctl.reboot(dev.name)
        assert not await ctl.verify_iosxe(dev.name, user.username, "Unsaved-New-Pass1")
        assert await ctl.verify_iosxe(dev.name, user.username, user.password)
        stats = await ctl.stats()
        assert stats["iosxe"][dev.name]["reboots"] == 1
        assert set(stats["meraki"]) == {small_lab.state.meraki.orgs[0].id}  # type: ignore[union-attr]
