"""`keyturn.demo.lab_records`: the records that onboard a lab, for labs with and without SSH."""

from __future__ import annotations

from typing import Any

from keyturn.demo import lab_records
from keyturn.sim.client import IosXeEntry, IosXeUser, LabState, Login


def _lab(ssh_port: int | None) -> LabState:
    dev = IosXeEntry(name="sw0001", host="127.0.0.1", restconf_port=8443, ssh_port=ssh_port,
                     admin=Login("admin", "admin-pw-1"), enable_secret="enable-pw-1",
                     users=[IosXeUser("netops1", "user-pw-1")])
    return LabState(control_url="http://127.0.0.1:1", ca_cert="/lab/ca.pem", iosxe=[dev])


def _custom(record: dict[str, Any]) -> dict[str, list[str]]:
    return {f["label"]: f["value"] for f in record.get("custom", [])}


def test_a_device_with_ssh_carries_its_port() -> None:
    device = lab_records(_lab(2222))[0]
    assert _custom(device) == {"ssh_port": ["2222"], "ca_bundle": ["/lab/ca.pem"]}


def test_a_device_without_ssh_has_no_ssh_port_field_rather_than_the_text_none() -> None:
    records = lab_records(_lab(None))
    device = records[0]
    assert device["title"] == "sw0001" and _custom(device) == {"ca_bundle": ["/lab/ca.pem"]}
    assert "None" not in repr(records)
