"""NetBox's device CSV export (keyturn.inventory.netbox)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.inventory import Defaults, InventoryInvalid
from keyturn.inventory.netbox import parse

EXPORT = """\
Name,Status,Tenant,Site,Location,Rack,Role,Manufacturer,Type,Platform,Primary IPv4
core-sw1,Active,,DC East,,R1,Core,Cisco,C9300-48P,Cisco IOS XE,10.0.0.1/24
core-sw2,Active,,DC East,,R1,Core,Cisco,C9300-48P,,10.0.0.2/24
fw1,Active,,DC East,,R2,Firewall,Fortinet,FG-100F,FortiOS,10.0.0.3/24
old-sw,Decommissioning,,DC East,,R3,Access,Cisco,C2960,ios,10.0.0.4/24
pp-1,Active,,DC East,,R3,Patch panel,Panduit,CP48,,
"""


def test_active_ios_devices_with_defaults_from_the_command_line() -> None:
    defaults = Defaults(users=("netops",), admin_login="admin", known_sites=("default", "dc-east"))
    inv = parse(Path("netbox.csv"), defaults, source=EXPORT)
    inv.check()
    assert [(d.name, d.host_field, d.site, d.target) for d in inv.devices] == [
        ("core-sw1", "10.0.0.1:443", "dc-east", "iosxe-restconf"),
        ("core-sw2", "10.0.0.2:443", "dc-east", "iosxe-restconf"),
    ]
    assert [u.title for u in inv.devices[0].users] == ["netops @ core-sw1"]
    assert not inv.secrets_in_file
    assert any("skipped 3 device(s)" in w and "fw1 (FortiOS)" in w and "old-sw (Decommissioning)" in w
               and "pp-1 (no primary IP)" in w for w in inv.warnings)


def test_unknown_site_and_missing_columns() -> None:
    inv = parse(Path("netbox.csv"), Defaults(admin_login="admin"), source=EXPORT)
    with pytest.raises(InventoryInvalid) as err:
        inv.check()
    assert str(err.value.problems[0]).startswith("netbox.csv:2: unknown site 'dc-east'; known sites: default")
    inv = parse(Path("netbox.csv"), Defaults(admin_login="admin"), source="Name,Status\nsw1,Active\n")
    with pytest.raises(InventoryInvalid) as err:
        inv.check()
    assert [str(p) for p in err.value.problems] == [
        "netbox.csv:1: no 'primary ipv4' column (a NetBox device export has Name and Primary IPv4)"]
