"""keyturn's own YAML inventory (keyturn.inventory.keyturn_yaml): defaults, devices, users."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.errors import ImportFailed
from keyturn.inventory import Defaults, InventoryInvalid
from keyturn.inventory.keyturn_yaml import parse

SITES = Defaults(known_sites=("default", "dc-east"))
DOC = """\
defaults:
  admin_login: admin
  target: iosxe-ssh
  schedule: every 30d
devices:
  - device: sw0001
    host: 10.0.0.1
    ssh_port: 2222
    site: dc-east
    admin_password: adm-pw
    users: [netops, {login: backup, password: bk-pw}]
  - device: sw0002
    host: 10.0.0.2
    target: iosxe-restconf
    port: 443
"""


def test_defaults_and_devices() -> None:
    inv = parse(Path("fleet.yaml"), SITES, source=DOC)
    inv.check()
    one, two = inv.devices
    assert (one.target, one.ssh_port, one.site, one.schedule) == ("iosxe-ssh", 2222, "dc-east",
                                                                 {"schedule": "every 30d"})
    assert [u.login for u in one.users] == ["netops", "backup"]
    assert one.users[1].password is not None and one.users[0].password is None
    assert (two.target, two.host_field, two.admin_login) == ("iosxe-restconf", "10.0.0.2:443", "admin")
    assert inv.secrets_in_file


def test_problems_are_named_by_device() -> None:
    inv = parse(Path("fleet.yaml"), SITES, source="devices:\n  - device: sw1\n    host: 10.0.0.1\n"
                "    admin_login: a\n    colour: red\n    schedule: every 0d\n  - host: 10.0.0.2\n  - 7\n"
                "extra: 1\n")
    with pytest.raises(InventoryInvalid) as err:
        inv.check()
    got = [str(p) for p in err.value.problems]
    assert "fleet.yaml: unknown top-level key 'extra' (known: defaults, devices)" in got
    assert "fleet.yaml:sw1: unknown setting 'colour'" in got
    assert any(p.startswith("fleet.yaml:sw1: schedule: ") for p in got)
    assert any(p.startswith("fleet.yaml:devices[1]: device name: ") for p in got)
    assert "fleet.yaml:devices[2]: a device must be a mapping" in got


def test_malformed_yaml_names_the_line() -> None:
    with pytest.raises(ImportFailed, match=r"fleet.yaml:3: not valid YAML"):
        parse(Path("fleet.yaml"), SITES, source="devices:\n  - device: sw1\n  host: [\n")
