"""The Nornir transform, end to end: keyturn rotates `netops1 @ sw0001` on the SSH simulator, then
Nornir (SimpleInventory, transform_function "keyturn" found through its entry point) fills the host's
password from keyturn — `keyturn serve` over HTTPS with the automation token, or the local vault — and a
nornir-netmiko task logs in with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from nornir import InitNornir
from nornir.core import Nornir
from nornir_netmiko.tasks import netmiko_send_command

from keyturn.errors import KeyturnError
from tests.integration.automation_lab import ACCOUNT, USER, Lab, automation_lab

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with automation_lab(tmp_path_factory.mktemp("nornir-lab")) as lab:
        yield lab


def _nornir(lab: Lab, tmp_path: Path, host_data: dict[str, Any], options: dict[str, Any]) -> Nornir:
    hosts = {"sw0001": {"hostname": "127.0.0.1", "port": lab.ssh_port, "username": "inventory-user",
                        "platform": "cisco_ios", "data": host_data,
                        "connection_options": {"netmiko": {"extras": {"fast_cli": False, "timeout": 20}}}}}
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    return InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": 2}},
        inventory={"plugin": "SimpleInventory", "options": {"host_file": str(tmp_path / "hosts.yaml")},
                   "transform_function": "keyturn", "transform_function_options": options},
        logging={"enabled": False},
    )


def _show_privilege(nr: Nornir) -> str:
    try:
        result = nr.run(task=netmiko_send_command, command_string="show privilege")
        assert not result.failed, {h: str(r.exception) for h, r in result.failed_hosts.items()}
        return str(result["sw0001"].result)
    finally:
        nr.close_connections()


def _server_env(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYTURN_HOME", raising=False)
    for name, value in lab.env.items():
        if name.startswith("KEYTURN_"):
            monkeypatch.setenv(name, value)


def test_task_logs_in_with_the_password_from_the_server(lab: Lab, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    lab.rotate()
    current = lab.current()
    assert current != lab.initial
    _server_env(lab, monkeypatch)
    nr = _nornir(lab, tmp_path, {"keyturn_record": ACCOUNT}, {})
    host = nr.inventory.hosts["sw0001"]
    assert (host.username, host.password) == (USER, current)
    assert "Current privilege level" in _show_privilege(nr)


def test_task_logs_in_with_the_password_from_the_local_vault(lab: Lab, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    lab.rotate()
    current = lab.current()
    for name in ("KEYTURN_URL", "KEYTURN_TOKEN", "KEYTURN_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KEYTURN_HOME", lab.base_env["KEYTURN_HOME"])
    nr = _nornir(lab, tmp_path, {}, {"record": f"{USER} @ {{name}}"})    # the record from a template
    host = nr.inventory.hosts["sw0001"]
    assert (host.username, host.password) == (USER, current)
    assert "Current privilege level" in _show_privilege(nr)


def test_a_refused_record_fails_the_load_naming_the_host(lab: Lab, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _server_env(lab, monkeypatch)
    record = "sw0001 admin" if lab.token_role == "consumer" else "no such record"
    with pytest.raises(KeyturnError) as err:
        _nornir(lab, tmp_path, {"keyturn_record": record}, {})
    message = str(err.value)
    assert message.startswith(f"nornir host sw0001: record '{record}': ")
    expected = "http 403" if lab.token_role == "consumer" else "not found"
    assert expected in message.lower()
    assert lab.token not in message


def test_a_b_rotation_hands_nornir_the_active_account_each_time(lab: Lab, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # the lab's second user on sw0001 becomes the idle account; each rotation swaps login and password
    lab.keyturn("rotation", "set", ACCOUNT, "--target", "iosxe-ssh", "--resource", "sw0001",
                "--admin", "sw0001 admin", "--option", "ab=deploy2")
    _server_env(lab, monkeypatch)
    seen = []
    for _ in range(2):
        lab.rotate()
        nr = _nornir(lab, tmp_path, {"keyturn_record": ACCOUNT}, {})
        host = nr.inventory.hosts["sw0001"]
        assert host.password == lab.current()
        seen.append(host.username)
        assert "Current privilege level" in _show_privilege(nr)
    assert sorted(seen) == ["deploy2", USER]
