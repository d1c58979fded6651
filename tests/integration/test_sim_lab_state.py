"""The lab's state file: every contract key, mode 0600, determinism, initial credentials that work."""

from __future__ import annotations

import json
import stat
import string
from pathlib import Path

import pytest

from keyturn.sim.client import LabState
from keyturn.sim.lab import make_plan
from tests.lab_fixtures import RunningLab, small_lab_fixture

small_lab = small_lab_fixture


def test_sim_lab_plan_is_deterministic_and_passwords_fit_ios() -> None:
    sizes = {"iosxe": 5, "meraki_orgs": 2, "networks_per_org": 2, "users_per_network": 3,
             "users_per_device": 4}
    a, b, c = make_plan(**sizes, seed=9), make_plan(**sizes, seed=9), make_plan(**sizes, seed=10)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()
    passwords = [d.admin.password for d in a.iosxe] + [d.enable_secret for d in a.iosxe]
    passwords += [u.password for d in a.iosxe for u in d.users]
    assert a.meraki is not None
    passwords += [u.password for o in a.meraki.orgs for n in o.networks for u in n.users]
    allowed = set(string.printable[:94]) - {"?"}
    for pw in passwords:
        assert 16 <= len(pw) <= 24
        assert set(pw) <= allowed
    assert len(set(passwords)) == len(passwords)
    kinds = [u.kind for u in a.iosxe[0].users]
    assert kinds == ["secret", "secret", "secret", "password"]
    assert all(u.privilege == 15 for d in a.iosxe for u in d.users)
    assert len({u.username for u in a.iosxe[0].users}) == 4


async def test_sim_lab_state_file_has_every_contract_key(small_lab: RunningLab) -> None:
    path = small_lab.state_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = json.loads(path.read_text())
    assert raw["control_url"].startswith("http://127.0.0.1:")
    assert Path(raw["ca_cert"]).is_absolute()
    assert Path(raw["ca_cert"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert isinstance(raw["pid"], int)
    assert raw["ssh_host_key_fingerprint"].startswith("SHA256:")
    assert len(raw["iosxe"]) == 3
    ports = set()
    for dev in raw["iosxe"]:
        assert set(dev) >= {"name", "host", "restconf_port", "ssh_port", "admin", "enable_secret", "users"}
        assert dev["host"] == "127.0.0.1"
        assert dev["restconf_port"] > 0 and dev["ssh_port"] > 0
        ports |= {dev["restconf_port"], dev["ssh_port"]}
        assert set(dev["admin"]) >= {"username", "password"}
        assert len(dev["users"]) == 2
        for user in dev["users"]:
            assert set(user) >= {"username", "password", "privilege"}
    assert len(ports) == 6
    assert [d["name"] for d in raw["iosxe"]] == ["sw0001", "sw0002", "sw0003"]
    m = raw["meraki"]
    assert m["base_url"].startswith("http://127.0.0.1:") and m["base_url"].endswith("/api/v1")
    assert m["proxy_url"].startswith("http://127.0.0.1:")
    assert len(m["api_key"]) == 40 and all(c in "0123456789abcdef" for c in m["api_key"].lower())
    assert len(m["orgs"]) == 1
    org = m["orgs"][0]
    assert set(org) >= {"id", "name", "networks"}
    net = org["networks"][0]
    assert net["id"].startswith("N_")
    assert [set(u) >= {"email", "password", "accountType"} for u in net["users"]] == [True, True]
    assert net["users"][0]["accountType"] == "Client VPN"
    # The typed loader round-trips the same document.
    assert LabState.load(path).to_dict() == raw


async def test_sim_lab_initial_credentials_log_in(small_lab: RunningLab) -> None:
    dev = small_lab.state.iosxe[1]
    model = small_lab.lab.devices[dev.name].device
    assert model.authenticate(dev.admin.username, dev.admin.password) is not None
    assert model.check_enable(dev.enable_secret)
    for user in dev.users:
        assert model.authenticate(user.username, user.password) is not None
    assert not next(d for d in small_lab.lab.devices_info() if d["name"] == dev.name)["unsaved_changes"]
    async with small_lab.control() as ctl:
        net = small_lab.state.meraki.orgs[0].networks[0]  # type: ignore[union-attr]
        assert await ctl.verify_meraki(net.id, net.users[0].email, net.users[0].password)


async def test_sim_lab_ssh_host_key_matches_state(small_lab: RunningLab) -> None:
    import asyncssh

    fingerprint = small_lab.state.extra["ssh_host_key_fingerprint"]
    for dev in small_lab.state.iosxe[:2]:
        async with asyncssh.connect("127.0.0.1", port=dev.ssh_port, username=dev.admin.username,
                                    password=dev.admin.password, known_hosts=None) as conn:
            key = conn.get_server_host_key()
            assert key is not None and key.get_fingerprint("sha256") == fingerprint


async def test_sim_lab_meraki_api_key_and_ids_work(small_lab: RunningLab) -> None:
    import httpx

    meraki = small_lab.state.meraki
    assert meraki is not None
    headers = {"Authorization": f"Bearer {meraki.api_key}"}
    async with httpx.AsyncClient(base_url=meraki.base_url, headers=headers) as http:
        orgs = (await http.get("/organizations")).json()
        assert [o["id"] for o in orgs] == [meraki.orgs[0].id]
        net = meraki.orgs[0].networks[0]
        users = (await http.get(f"/networks/{net.id}/merakiAuthUsers")).json()
        assert sorted(u["email"] for u in users) == sorted(u.email for u in net.users)
        wrong = {"Authorization": "Bearer " + "0" * 40}
        assert (await http.get("/organizations", headers=wrong)).status_code == 401


async def test_sim_lab_self_signed_devices_have_their_own_ca(tmp_path: Path) -> None:
    import ssl

    import httpx

    from tests.lab_fixtures import running_lab

    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, ssh=False, tls="self-signed") as lab:
        dev = lab.state.iosxe[0]
        assert dev.ssh_port is None and lab.state.meraki is None
        assert dev.ca_cert is not None
        assert Path(dev.ca_cert).read_bytes() != Path(lab.state.ca_cert).read_bytes()
        url = f"{dev.restconf_url}/data/Cisco-IOS-XE-native:native/username"
        auth = (dev.admin.username, dev.admin.password)
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=dev.ca_cert)) as own:
            assert (await own.get(url, auth=auth)).status_code == 200
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=lab.state.ca_cert)) as lab_ca:
            with pytest.raises(httpx.ConnectError):
                await lab_ca.get(url, auth=auth)
