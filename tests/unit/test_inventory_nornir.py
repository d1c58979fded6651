"""Nornir SimpleInventory (keyturn.inventory.nornir): hosts.yaml with groups.yaml and defaults.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.inventory import Defaults, InventoryInvalid
from keyturn.inventory.nornir import parse

SITES = Defaults(known_sites=("default", "dc-east"))
HOSTS = """\
core1:
  hostname: 10.0.0.1
  groups: [core]
  data: {keyturn_users: [netops, backup]}
acc1:
  hostname: 10.0.1.1
  port: 2200
  password: acc-pw
  groups: [access]
rc1:
  hostname: 10.0.2.1
  port: 8443
  groups: [access]
  data: {keyturn_target: iosxe-restconf, keyturn_ssh_port: 22}
fw1:
  hostname: 10.0.3.1
  platform: fortios
"""
GROUPS = """\
ios:
  platform: cisco_iosxe
  data: {keyturn_users: [netops], keyturn_site: dc-east}
core:
  groups: [ios]
  password: core-pw
  data: {keyturn_schedule: "0 3 * * *"}
access:
  groups: [ios]
"""
DEFAULTS = """\
username: admin
password: default-pw
port: 22
data: {keyturn_site: default}
"""


def test_hosts_groups_and_defaults_resolve_as_nornir_does(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    (tmp_path / "groups.yaml").write_text(GROUPS)
    (tmp_path / "defaults.yml").write_text(DEFAULTS)
    inv = parse(tmp_path / "hosts.yaml", SITES)
    inv.check()
    devs = {d.name: d for d in inv.devices}
    assert sorted(devs) == ["acc1", "core1", "rc1"]
    core, acc, rc = devs["core1"], devs["acc1"], devs["rc1"]
    assert core.admin_password is not None and core.admin_password.reveal() == "core-pw"  # group > defaults
    assert acc.admin_password is not None and acc.admin_password.reveal() == "acc-pw"     # host > group
    assert (core.target, core.ssh_port, core.site) == ("iosxe-ssh", 22, "dc-east")     # defaults' port
    assert [u.login for u in core.users] == ["netops", "backup"]                      # host data wins
    assert core.schedule == {"schedule": "0 3 * * *"} and acc.schedule is None
    assert (acc.ssh_port, acc.admin_login, [u.login for u in acc.users]) == (2200, "admin", ["netops"])
    assert (rc.target, rc.port, rc.ssh_port) == ("iosxe-restconf", 8443, 22)
    assert any("skipped 1 host(s)" in w and "fw1" in w for w in inv.warnings)


def test_problems_name_the_host_or_group(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    inv = parse(path, SITES, source="sw1:\n  hostname: 10.0.0.1\n  groups: [cor]\n  username: a\n"
                "sw2:\n  hostname: 10.0.0.2\n  colour: red\n"
                "sw3:\n  hostname: 10.0.0.3\n  username: a\n  data: {keyturn_site: mars}\n",
                groups_source="core: {}\n", defaults_source="")
    with pytest.raises(InventoryInvalid) as err:
        inv.check()
    got = [str(p).replace(str(tmp_path) + "/", "") for p in err.value.problems]
    assert "groups.yaml: unknown group 'cor'; did you mean 'core'?" in got
    assert any(p.startswith("hosts.yaml:sw2: unknown key(s) colour") for p in got)
    assert any(p.startswith("hosts.yaml:sw3: unknown site 'mars'") for p in got)
