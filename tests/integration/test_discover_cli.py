"""`keyturn discover meraki|iosxe` against a simulator lab: plan, --apply, then `keyturn rotate --all`
rotates every discovered account (proved through the lab's control API, never by keyturn itself).

The CLI runs in a worker thread (it starts its own event loop) while the lab serves on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from keyturn.config import Settings
from keyturn.secret import Secret
from keyturn.sim.onboard import onboard_iosxe
from keyturn.vault import Field, Vault
from tests.lab_fixtures import running_lab


async def cli(home: Path, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Any:
    def run() -> Any:
        result = CliRunner().invoke(app_(), list(args), env={"KEYTURN_HOME": str(home), **(env or {})})
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result
    return await asyncio.to_thread(run)


def app_() -> Any:
    from keyturn.cli.main import app
    return app


async def meraki_plan(home: Path, *extra: str, code: int = 0) -> Any:
    return json.loads((await cli(home, "discover", "meraki", "--admin", "meraki-api-key", "--json",
                                 *extra, code=code)).stdout)


def add_api_key(home: Path, base_url: str, key: str) -> None:
    vault = Vault.init(Settings(home=home))
    try:
        vault.add(type="login", title="meraki-api-key",
                  fields=[Field("login", None, ["api"]), Field("password", None, [Secret(key)])],
                  custom=[Field("text", "base_url", [base_url])])
    finally:
        vault.close()


async def test_discover_meraki_apply_then_rotate_all_on_ten_orgs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=0, meraki_orgs=10, networks_per_org=2, users_per_network=2,
                           ssh=False) as lab:
        meraki = lab.state.meraki
        assert meraki is not None
        add_api_key(home, meraki.base_url, meraki.api_key)
        expected = {(net.id, user.email) for org in meraki.orgs for net in org.networks for user in net.users}
        assert len(expected) == 40

        plan = await meraki_plan(home)
        proposed = {(r["source"].rsplit("(", 1)[1].rstrip(")"), r["account"]) for r in plan["rows"]
                    if r["action"] == "create"}
        assert proposed == expected
        assert plan["summary"]["unreadable"] == 0 and len(plan["new_resources"]) == 20
        assert plan["applied"] is False
        vault = Vault.open(Settings(home=home))
        try:
            assert [r.title for r in vault.find(type="pamUser")] == []   # a plan changes nothing
        finally:
            vault.close()

        verifier = f"{lab.state.control_url}/verify"   # the lab's login check, as engine_lab configures it
        out = (await cli(home, "discover", "meraki", "--admin", "meraki-api-key", "--verify-url", verifier,
                         "--apply")).stdout
        assert "applied: 40 record(s)" in out
        again = await meraki_plan(home)
        assert again["summary"]["create"] == 0 and again["summary"]["managed"] == 40   # idempotent

        rotated = json.loads((await cli(home, "rotate", "--all", "--json")).stdout)["results"]
        assert len(rotated) == 40
        assert {r["outcome"] for r in rotated} == {"rotated"}, rotated
        vault = Vault.open(Settings(home=home))
        try:
            async with lab.control() as ctl:
                for user in vault.find(type="pamUser"):
                    secret = vault.secret(user.uid)
                    assert secret is not None
                    email, _, net = user.title.partition(" @ ")
                    assert await ctl.verify_meraki(net, email, secret.reveal()), user.title
        finally:
            vault.close()


async def test_discover_meraki_network_filter_and_org(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=0, meraki_orgs=2, networks_per_org=2, users_per_network=1,
                           ssh=False) as lab:
        meraki = lab.state.meraki
        assert meraki is not None
        add_api_key(home, meraki.base_url, meraki.api_key)
        org = meraki.orgs[1]
        net = org.networks[0]
        plan = await meraki_plan(home, "--org", org.id, "--network-filter", net.id.lower())
        assert [(r["account"], r["action"]) for r in plan["rows"]] == [(net.users[0].email, "create")]


async def test_discover_meraki_unknown_admin_record_is_one_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Vault.init(Settings(home=home)).close()
    result = await cli(home, "discover", "meraki", "--admin", "no-such-key", code=4)
    assert "no record with uid or title 'no-such-key'" in result.stderr


async def test_discover_iosxe_lists_users_apply_then_rotate_all(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=2, meraki_orgs=0, users_per_device=3) as lab:
        vault = Vault.init(Settings(home=home))
        try:  # each device known with its admin and ONE managed user; two users per device unknown
            onboard_iosxe(vault, lab.state, target=["iosxe-restconf", "iosxe-ssh"], users=1)
        finally:
            vault.close()
        out = (await cli(home, "discover", "iosxe", "--all")).stdout
        plan = json.loads((await cli(home, "discover", "iosxe", "--all", "--json")).stdout)
        rows = {(r["source"], r["account"]): r for r in plan["rows"]}
        for dev in lab.state.iosxe:
            assert rows[(dev.name, dev.users[0].username)]["action"] == "managed"
            assert rows[(dev.name, dev.admin.username)]["action"] == "admin"
            for user in dev.users[1:]:
                row = rows[(dev.name, user.username)]
                assert row["action"] == "create", row
                assert row["privilege"] == user.privilege
                kind, _, stored_type = row["credential"].partition(" ")
                assert kind == user.kind and stored_type == (user.encryption or stored_type) != ""
                assert user.username in out
        assert plan["summary"]["create"] == 4

        await cli(home, "discover", "iosxe", "--all", "--apply")
        rotated = json.loads((await cli(home, "rotate", "--all", "--json")).stdout)["results"]
        assert len(rotated) == 6
        assert {r["outcome"] for r in rotated} == {"rotated"}, rotated
        vault = Vault.open(Settings(home=home))
        try:
            async with lab.control() as ctl:
                for dev in lab.state.iosxe:
                    for user in dev.users:
                        rec = vault.get(f"{user.username} @ {dev.name}")
                        secret = vault.secret(rec.uid)
                        assert secret is not None and secret.reveal() != user.password
                        assert await ctl.verify_iosxe(dev.name, user.username, secret.reveal())
        finally:
            vault.close()


async def test_discover_iosxe_unreachable_device_is_a_row_others_listed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=2, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        vault = Vault.init(Settings(home=home))
        try:
            onboard_iosxe(vault, lab.state, users=1)
            # a Keeper-style "Cisco Authentication Record" (resource and admin at once) nobody answers on
            vault.add(type="login", title="gone", fields=[Field("login", None, ["admin"]),
                                                          Field("password", None, [Secret("x")])],
                      custom=[Field("text", "host_endpoint", ["127.0.0.1:9"])])
            vault.add(type="pamNetworkDevice", title="orphan", fields=[Field("host", None, ["127.0.0.1:9"])])
        finally:
            vault.close()
        result = await cli(home, "discover", "iosxe", "--all", "--json", code=1)
        plan = json.loads(result.stdout)
        unread = {r["source"]: r["note"] for r in plan["rows"] if r["action"] == "unreadable"}
        assert sorted(unread) == ["gone", "orphan"]
        assert "127.0.0.1" in unread["gone"]
        assert "give --admin RECORD" in unread["orphan"]
        names = [dev.name for dev in lab.state.iosxe]
        assert {r["source"] for r in plan["rows"]} == {"gone", "orphan", *names}
        assert plan["summary"]["managed"] == 2


async def test_discovery_takes_the_shared_limits_when_redis_is_configured(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=1, users_per_device=1, users_per_network=1,
                           ssh=False) as lab:
        meraki = lab.state.meraki
        assert meraki is not None
        add_api_key(home, meraki.base_url, meraki.api_key)
        vault = Vault.open(Settings(home=home))
        try:
            onboard_iosxe(vault, lab.state, users=0)
            vault.add(type="pamUser", title="managed", fields=[Field("login", None, ["nobody"])])
        finally:
            vault.close()
        # Redis down: nothing is read unpaced; every source says why
        down = {"KEYTURN_REDIS_URL": "redis://127.0.0.1:1/0"}
        plan = await meraki_plan_env(home, down, code=1)
        assert [r["action"] for r in plan["rows"]] == ["unreadable"]
        assert "redis" in plan["rows"][0]["note"].lower()
        dev = lab.state.iosxe[0]
        result = await cli(home, "discover", "iosxe", "--all", "--admin", f"{dev.name} admin", "--json",
                           code=1, env=down)
        assert [r["action"] for r in json.loads(result.stdout)["rows"]] == ["unreadable"]
        # Redis up: the shared budget and device slots, same plan as in-process
        up = {"KEYTURN_REDIS_URL": "redis://127.0.0.1:6379/0"}
        plan = await meraki_plan_env(home, up)
        assert [(r["account"], r["action"]) for r in plan["rows"]] == [
            (u.email, "create") for org in meraki.orgs for net in org.networks for u in net.users]
        result = await cli(home, "discover", "iosxe", "--all", "--admin", f"{dev.name} admin", "--json",
                           env=up)
        rows = json.loads(result.stdout)["rows"]
        assert sorted(r["account"] for r in rows) == sorted([dev.admin.username, dev.users[0].username])


async def meraki_plan_env(home: Path, env: dict[str, str], code: int = 0) -> Any:
    result = await cli(home, "discover", "meraki", "--admin", "meraki-api-key", "--json", code=code, env=env)
    return json.loads(result.stdout)


async def test_a_429_storm_on_one_org_is_a_row_the_other_orgs_still_listed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=0, meraki_orgs=3, users_per_network=1, ssh=False) as lab:
        meraki = lab.state.meraki
        assert meraki is not None
        add_api_key(home, meraki.base_url, meraki.api_key)
        stormy = meraki.orgs[1]
        async with lab.control() as ctl:
            await ctl.set_faults(stormy.id, {"rate_limit_storm": 1000, "retry_after": 0}, kind="meraki")
        plan = await meraki_plan(home, code=1)
        unread = [r for r in plan["rows"] if r["action"] == "unreadable"]
        assert len(unread) == 1 and stormy.id in unread[0]["source"]
        assert "rate limited" in unread[0]["note"]
        listed = {r["account"] for r in plan["rows"] if r["action"] == "create"}
        assert listed == {u.email for org in meraki.orgs if org is not stormy
                          for net in org.networks for u in net.users}
