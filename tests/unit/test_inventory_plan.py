"""Applying an inventory (keyturn.inventory.plan) to a real vault on SQLite in tmp_path: create, re-run
unchanged, update by title, dry run and problems leave the vault as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.inventory import Defaults, InventoryInvalid, apply
from keyturn.inventory.keyturn_csv import parse
from keyturn.secret import Secret
from keyturn.vault import Field, Vault

HEADER = ("device,host,ssh_port,target,site,admin_login,admin_password,enable_secret,user,user_password,"
          "schedule\n")
FLEET = HEADER + (
    "sw1,10.0.0.1,22,iosxe-restconf,dc-east,admin,adm-1,en-1,netops,,every 30d\n"
    "sw1,,,,,,,,backup,bk-1,\n"
    "sw2,10.0.0.2,2222,iosxe-ssh,,admin,adm-2,,netops,,\n")
DEFAULTS = Defaults(known_sites=("default", "dc-east"))


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    with Vault.init(Settings(home=tmp_path / "home", sites=["dc-east"])) as v:
        yield v


def inv(text: str):
    return parse(Path("fleet.csv"), DEFAULTS, source=text)


def table(plan) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.title) for c in plan.changes]


def titles(vault: Vault) -> list[str]:
    return sorted(s.title for s in vault.summaries() if s.type != "pamConfiguration")


def test_create_then_rerun_is_unchanged(vault: Vault) -> None:
    plan = apply(vault, inv(FLEET))
    assert plan.applied
    assert plan.counts()["device"]["create"] == 2 and plan.counts()["profile"]["create"] == 3
    assert plan.counts()["schedule"]["create"] == 2
    assert titles(vault) == ["backup @ sw1", "netops @ sw1", "netops @ sw2", "sw1", "sw1 admin", "sw2",
                             "sw2 admin"]
    res = vault.get("sw1")
    assert res.field("host") == "10.0.0.1:443" and res.custom_value("ssh_port") == "22"
    assert res.meta["site"] == "dc-east"
    admin = vault.get("sw1 admin")
    assert admin.field("password") == Secret("adm-1")
    assert admin.custom_value("enable_secret") == Secret("en-1")
    assert vault.secret(vault.resolve("netops @ sw1")) is None          # unknown: the admin sets it
    assert vault.secret(vault.resolve("backup @ sw1")) == Secret("bk-1")
    profile = vault.get("netops @ sw2").meta["rotation"]
    assert (profile["target"], profile["resource"], profile["admin"]) == (
        "iosxe-ssh", vault.resolve("sw2"), vault.resolve("sw2 admin"))
    assert vault.get("netops @ sw1").meta["schedule"]["spec"] == "every 30d"
    anchor = vault.get("netops @ sw1").meta["schedule"]["anchor"]

    again = apply(vault, inv(FLEET))
    assert {c.action for c in again.changes} == {"unchanged"}
    assert len(again.changes) == len(plan.changes)
    assert vault.get("netops @ sw1").meta["schedule"]["anchor"] == anchor   # the grid keeps its anchor


def test_update_by_title_keeps_what_the_file_does_not_say(vault: Vault) -> None:
    apply(vault, inv(FLEET))
    sw1 = vault.resolve("sw1")
    rec = vault.get(sw1)
    vault.update(sw1, custom=[*rec.custom, Field("text", "host_key_fingerprint", ["SHA256:pinned"])])
    netops = vault.resolve("backup @ sw1")
    vault.update(netops, fields=[Field("login", None, ["backup"]),
                                 Field("password", None, [Secret("rotated")])])
    changed = FLEET.replace("10.0.0.1,22,", "10.0.0.11,22,").replace("adm-2", "adm-2b")
    plan = apply(vault, inv(changed))
    assert [(c.action, c.kind, c.title, c.detail) for c in plan.changes if c.action != "unchanged"] == [
        ("update", "device", "sw1", "host"), ("update", "admin", "sw2 admin", "password")]
    rec = vault.get(sw1)
    assert rec.field("host") == "10.0.0.11:443"
    assert rec.custom_value("host_key_fingerprint") == "SHA256:pinned"     # a pin is kept
    assert vault.secret(netops) == Secret("rotated")                      # never the file's old one
    assert vault.get("sw2 admin").field("password") == Secret("adm-2b")


def test_dry_run_writes_nothing(vault: Vault) -> None:
    plan = apply(vault, inv(FLEET), dry_run=True)
    assert not plan.applied and plan.counts()["user"]["create"] == 3
    assert titles(vault) == []


def test_a_problem_in_one_device_imports_nothing(vault: Vault) -> None:
    vault.add(type="login", title="sw2", fields=[Field("login", None, ["x"])])   # the title, but not a device
    text = FLEET + "sw3,10.0.0.3,,,,admin,,,netops,,\n"                        # no admin password
    with pytest.raises(InventoryInvalid) as err:
        apply(vault, inv(text))
    assert [str(p) for p in err.value.problems] == [
        "fleet.csv:4: record 'sw2' exists as a login; the device must be a pamNetworkDevice",
        "fleet.csv:5: sw3 admin: no admin password (give it in the file, or with --admin-password -)",
    ]
    assert titles(vault) == ["sw2"]


def test_set_profile_refusals_come_back_with_the_line(vault: Vault) -> None:
    text = HEADER.strip() + ",failed_login_budget\n" + "sw1,10.0.0.1,22,iosxe-restconf,,admin,a,,u,,,5\n"
    plan = apply(vault, inv(text))
    assert plan.applied
    # the same account as another profile's admin: refused by set_profile, not by the parser
    text = HEADER + "sw9,10.0.0.9,22,iosxe-restconf,,admin,a,,u,,\n"
    vault.add(type="pamUser", title="u @ sw9", fields=[Field("login", None, ["u"]),
                                                      Field("password", None, [Secret("u-pw")])])
    vault.add(type="login", title="sw9 admin", fields=[Field("login", None, ["admin"]),
                                                        Field("password", None, [Secret("a")])])
    user = vault.add(type="pamUser", title="other", fields=[Field("login", None, ["o"])])
    from keyturn.engine.profile import set_profile

    vault.add(type="pamNetworkDevice", title="sw9", fields=[Field("host", None, ["10.0.0.9:443"])],
              custom=[Field("text", "ssh_port", ["22"])])
    set_profile(vault, user.uid, target="iosxe-restconf", resource="sw9", admin="u @ sw9")
    with pytest.raises(InventoryInvalid) as err:
        apply(vault, inv(text))
    assert len(err.value.problems) == 1
    assert str(err.value.problems[0]).startswith("fleet.csv:2: record 'u @ sw9' is the admin credential")
