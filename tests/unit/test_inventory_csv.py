"""keyturn's own CSV inventory (keyturn.inventory.keyturn_csv): rows per account, problems with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.inventory import Defaults, InventoryInvalid, detect
from keyturn.inventory.keyturn_csv import parse

SITES = Defaults(known_sites=("default", "dc-east"))


def load(text: str, defaults: Defaults = SITES, name: str = "fleet.csv"):
    return parse(Path(name), defaults, source=text)


def problems(text: str, defaults: Defaults = SITES) -> list[str]:
    inv = load(text, defaults)
    with pytest.raises(InventoryInvalid) as err:
        inv.check()
    return [str(p) for p in err.value.problems]


def test_rows_per_account_make_one_device_with_its_users() -> None:
    inv = load("device,host,port,ssh_port,target,site,admin_login,admin_password,enable_secret,user,"
               "user_password,schedule,jitter,verify\n"
               "# a comment line\n"
               "sw0001,10.0.0.1,8443,2222,iosxe-ssh,dc-east,admin,adm-pw,en-pw,netops,,0 2 * * sun,1h,hash\n"
               "sw0001,,,,,,,,,backup,bk-pw,,,\n"
               "sw0002,10.0.0.2,,,,,admin,adm-pw2,,,,,,\n")
    inv.check()
    assert [d.name for d in inv.devices] == ["sw0001", "sw0002"]
    one, two = inv.devices
    assert (one.host_field, one.ssh_port, one.target, one.site) == ("10.0.0.1:8443", 2222, "iosxe-ssh",
                                                                    "dc-east")
    assert [(u.login, u.title) for u in one.users] == [("netops", "netops @ sw0001"),
                                                       ("backup", "backup @ sw0001")]
    assert one.users[0].password is None and one.users[1].password is not None
    assert one.users[1].password.reveal() == "bk-pw"
    assert one.admin_title == "sw0001 admin" and one.enable_secret is not None
    assert one.options == {"verify": "hash"}
    assert one.schedule == {"schedule": "0 2 * * sun", "jitter": "1h"}
    assert (two.host_field, two.target, two.users) == ("10.0.0.2:443", "iosxe-restconf", [])
    assert inv.secrets_in_file
    assert "holds secrets in clear" in inv.warnings[0]
    assert any("list no user" in w for w in inv.warnings)
    assert "adm-pw" not in repr(inv)


def test_no_secret_in_the_file_no_warning_and_defaults_apply() -> None:
    inv = load("device,host\nsw1,10.0.0.1\n",
               Defaults(target="iosxe-ssh", users=("netops",), admin_login="admin"))
    inv.check()
    assert not inv.secrets_in_file and not any("clear" in w for w in inv.warnings)
    assert inv.devices[0].target == "iosxe-ssh" and inv.devices[0].admin_login == "admin"
    # --user applies to the formats without users (NetBox); a CSV names its users itself
    assert inv.devices[0].users == []


def test_every_problem_is_listed_with_its_line() -> None:
    got = problems(
        "device,host,port,target,admin_login,user,schedule,colour\n"
        "sw3,10.0.0.3,,iosxe-restconff,admin,netops,0 25 * * *,red\n"
        "sw4,10.0.0.4:,,,admin,netops,,\n"
        "sw4,10.0.0.9,,,,netops,,\n"
        "sw5,10.0.0.5,99999,,admin,netops,,,extra\n"
        "sw6,10.0.0.6,,,,u,,\n"
        ",10.0.0.7,,,admin,u,,\n")
    assert got == [
        "fleet.csv:1: unknown column 'colour'",
        "fleet.csv:2: unknown target 'iosxe-restconff'; did you mean 'iosxe-restconf'? (an inventory "
        "imports IOS XE devices: iosxe-restconf, iosxe-ssh)",
        "fleet.csv:2: schedule: invalid cron expression '0 25 * * *': [0 25 * * *] is not acceptable, "
        "out of range",
        "fleet.csv:3: host '10.0.0.4:' has no port after ':'",
        "fleet.csv:4: host '10.0.0.9' contradicts '10.0.0.4:' given for sw4 at fleet.csv:3",
        "fleet.csv:4: user 'netops' is listed twice for sw4 (first at fleet.csv:3)",
        "fleet.csv:5: 9 cells, but the header names 8 columns",
        "fleet.csv:6: no admin login (the credential keyturn logs in with; or --admin-login NAME)",
        "fleet.csv:7: no device name",
    ]


def test_a_contradicting_secret_is_reported_without_its_value() -> None:
    got = problems("device,host,admin_login,admin_password,user\n"
                   "sw1,10.0.0.1,admin,first-Secret,u\nsw1,,,second-Secret,v\n")
    assert got == ["fleet.csv:3: admin_password differs from the one given for sw1 at fleet.csv:2"]


def test_unknown_site_option_policy_and_trust_values() -> None:
    got = problems("device,host,admin_login,site,mode,policy,ssh_host_key,ca_bundle,tz\n"
                   "sw1,10.0.0.1,admin,dc-west,hashed,\"8,1,1,1,1,x\",maybe,/nonexistent/ca.pem,UTC\n")
    assert got[0].startswith("fleet.csv:2: unknown site 'dc-west'; known sites: default, dc-east")
    assert any("profile option mode must be one of auto, secret, password, not 'hashed'" in p for p in got)
    assert any(p.startswith("fleet.csv:2: policy: ") for p in got)
    assert "fleet.csv:2: ssh_host_key must be one of tofu, accept-any, not 'maybe'" in got
    assert "fleet.csv:2: ca_bundle '/nonexistent/ca.pem': no such file" in got
    assert "fleet.csv:2: tz, window and jitter need a schedule" in got


def test_duplicate_titles_across_devices_and_a_missing_host() -> None:
    got = problems("device,host,admin_login,user\n"
                   "sw1,10.0.0.1,admin,u\n"
                   "SW1 ,10.0.0.1,admin,v\n"
                   "sw2,,admin,\n")
    assert got == ["fleet.csv:4: no host (give the device's address)"]  # SW1 is sw1 (titles ignore case)
    got = problems("device,host,admin_login,user\nsw1,10.0.0.1,admin,x\nx @ sw1 admin,10.0.0.2,admin,\n"
                   "sw1 admin,10.0.0.3,admin,\n")
    assert got == ["fleet.csv:4: duplicate title 'sw1 admin' (first at fleet.csv:2)"]


def test_ca_bundle_relative_to_the_inventory(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    inv = parse(tmp_path / "fleet.csv", SITES, source="device,host,admin_login,ca_bundle,ssh_host_key\n"
                "sw1,10.0.0.1,admin,ca.pem,TOFU\n")
    inv.check()
    assert inv.devices[0].trust == {"ca_bundle": str((tmp_path / "ca.pem").resolve()), "ssh_host_key": "tofu"}


def test_an_empty_file_and_ipv6_hosts() -> None:
    assert problems("") == ["fleet.csv:1: the file is empty (no header)"]
    inv = load("device,host,admin_login\nv6,[2001:db8::1]:8443,admin\nbare,2001:db8::2,admin\n")
    inv.check()
    assert [d.host_field for d in inv.devices] == ["[2001:db8::1]:8443", "[2001:db8::2]:443"]


@pytest.mark.parametrize(("name", "head", "fmt"), [
    ("fleet.csv", "device,host\n", "csv"),
    ("export.csv", "Name,Status,Site,Primary IPv4\n", "netbox-csv"),
    ("inv.json", '{"_meta": {}}', "ansible"),
    ("inv.yml", "all:\n  hosts:\n", "ansible"),
    ("fleet.yaml", "defaults: {}\ndevices:\n", "yaml"),
    ("hosts.yaml", "sw1:\n  hostname: 10.0.0.1\n", "nornir"),
])
def test_format_detection(name: str, head: str, fmt: str) -> None:
    assert detect(Path(name), head) == fmt
