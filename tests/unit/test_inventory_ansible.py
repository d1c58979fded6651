"""Ansible inventories (keyturn.inventory.ansible): `ansible-inventory --list` JSON and YAML inventories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyturn.errors import ImportFailed
from keyturn.inventory import Defaults, InventoryInvalid
from keyturn.inventory.ansible import parse

SITES = Defaults(known_sites=("default", "dc-east"))

YAML_INV = """\
all:
  vars:
    ansible_network_os: cisco.ios.ios
    ansible_user: admin
    keyturn_users: [netops]
  children:
    switches:
      vars:
        ansible_connection: ansible.netcommon.network_cli
        ansible_password: !vault |
          $ANSIBLE_VAULT;1.1;AES256
          3132
      children:
        core:
          vars:
            keyturn_site: dc-east
            ansible_password: core-pw
          hosts:
            core1: {ansible_host: 10.0.0.1, ansible_port: 2222}
        access:
          hosts:
            acc1:
              ansible_host: 10.0.1.1
              ansible_become_password: en-pw
              keyturn_users: [{login: netops}, {login: backup, password: bk-pw}]
    restconf:
      vars: {ansible_connection: ansible.netcommon.httpapi}
      hosts:
        rc1: {ansible_host: 10.0.2.1, ansible_port: 8443, ansible_password: rc-pw}
    servers:
      hosts:
        web1: {ansible_network_os: linux}
"""


def test_yaml_inventory_maps_connection_ports_and_group_vars() -> None:
    inv = parse(Path("inv.yml"), SITES, source=YAML_INV)
    inv.check()
    devs = {d.name: d for d in inv.devices}
    assert sorted(devs) == ["acc1", "core1", "rc1"]
    core, acc, rc = devs["core1"], devs["acc1"], devs["rc1"]
    assert (core.target, core.host, core.ssh_port, core.port, core.site) == ("iosxe-ssh", "10.0.0.1", 2222,
                                                                            None, "dc-east")
    assert core.admin_password is not None and core.admin_password.reveal() == "core-pw"  # child group wins
    assert acc.admin_password is None  # !vault: unknown
    assert acc.enable_secret is not None and [u.login for u in acc.users] == ["netops", "backup"]
    assert (rc.target, rc.port, rc.ssh_port, rc.host_field) == ("iosxe-restconf", 8443, None, "10.0.2.1:8443")
    assert [u.login for u in core.users] == ["netops"]
    assert any("skipped 1 host(s)" in w and "web1" in w for w in inv.warnings)
    assert any("encrypted (Ansible Vault)" in w for w in inv.warnings)


def test_ansible_inventory_list_json() -> None:
    doc = {
        "_meta": {"hostvars": {
            "sw1": {"ansible_host": "10.0.0.1", "ansible_network_os": "ios", "ansible_user": "admin",
                    "ansible_password": "pw1", "keyturn_target": "iosxe-restconf", "keyturn_port": 8443,
                    "ansible_port": 22, "keyturn_users": "netops, backup"},
            "sw2": {"ansible_host": "10.0.0.2", "ansible_password": {"__ansible_vault": "$ANSIBLE_VAULT"}},
        }},
        "all": {"children": ["ungrouped", "ios"]},
        "ios": {"hosts": ["sw2"], "vars": {"ansible_network_os": "cisco.ios.ios", "ansible_user": "ops"}},
        "ungrouped": {"hosts": ["sw1"]},
    }
    inv = parse(Path("inv.json"), Defaults(users=("netops",)), source=json.dumps(doc))
    inv.check()
    sw1, sw2 = inv.devices
    # network_cli is the default connection: ansible_port is SSH; keyturn_port the RESTCONF port
    assert (sw1.target, sw1.ssh_port, sw1.port) == ("iosxe-restconf", 22, 8443)
    assert [u.login for u in sw1.users] == ["netops", "backup"]
    assert (sw2.admin_login, sw2.admin_password, sw2.target) == ("ops", None, "iosxe-ssh")  # --export style
    assert [u.login for u in sw2.users] == ["netops"]  # from --user


def test_bad_hosts_are_listed_by_name() -> None:
    doc = {"_meta": {"hostvars": {
        "sw1": {"ansible_user": "admin", "ansible_host": "{{ lookup('env', 'X') }}"},
        "sw2": {"ansible_user": "admin", "keyturn_targte": "iosxe-ssh", "keyturn_target": "meraki-auth-user"},
        "sw3": {"ansible_user": "admin", "ansible_connection": "local"},
        "sw4": {"ansible_host": "10.0.0.4"},
    }}}
    inv = parse(Path("inv.json"), SITES, source=json.dumps(doc))
    with pytest.raises(InventoryInvalid) as err:
        inv.check()
    got = [str(p) for p in err.value.problems]
    assert got == [
        "inv.json:sw1: ansible_host is a Jinja2 template; import the output of `ansible-inventory --list` "
        "instead",
        "inv.json:sw2: unknown variable 'keyturn_targte'; did you mean 'target'?",
        "inv.json:sw2: unknown target 'meraki-auth-user' (an inventory imports IOS XE devices: "
        "iosxe-restconf, iosxe-ssh)",
        "inv.json:sw3: ansible_connection 'local' cannot reach IOS XE (use network_cli, httpapi or restconf)",
        "inv.json:sw4: no admin login (the credential keyturn logs in with; or --admin-login NAME)",
    ]


def test_an_ini_inventory_is_refused_with_the_conversion() -> None:
    with pytest.raises(ImportFailed, match="ansible-inventory -i FILE --list"):
        parse(Path("hosts"), SITES, source="[switches]\nsw1 ansible_host=10.0.0.1\n")
