"""examples/scripts/oxidized_update.py run unmodified through keyturn's script runner: it rewrites the
rotated account's password in an Oxidized `router.db` (and a RANCID `.cloginrc`), then makes a local
HTTP receiver standing in for oxidized-web reload its source and queue the node."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from keyturn.scripts.attachments import ScriptAttachment, to_meta
from keyturn.scripts.runner import ScriptResult, run_rotation_scripts
from keyturn.secret import Secret
from tests.integration.automation_lab import ACCOUNT, USER, automation_lab, keyturn
from tests.script_records import F, R

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "scripts" / "oxidized_update.py"
NEW = "Rot8ted-Pass-2026"
OLD = "Old-Pass-2025x"
BASE_ENV = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}", "LANG": "C.UTF-8"}

ROUTER_DB = f"""\
# name:model:username:password
sw0001:ios:netops1:{OLD}
sw0001:ios:backup:Backup-Only-1
sw0002:ios:netops1:Other-Device-2

sw00011:ios:netops1:Prefix-Node-3
"""

CLOGINRC = """\
add user sw0001 netops1
add password sw0001 {PW} {Enable-Secret-9}
add user sw0002 netops1
add password sw0002 {Other-Device-2}
add method * ssh
"""


@dataclass
class Oxidized:
    url: str
    router_db: Path
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    source_at_reload: list[str] = field(default_factory=list)
    status: int = 200


@pytest.fixture
async def oxidized(tmp_path: Path) -> AsyncIterator[Oxidized]:
    router_db = tmp_path / "router.db"
    router_db.write_text(ROUTER_DB)
    router_db.chmod(0o640)
    state = Oxidized("", router_db)

    async def reload(request: web.Request) -> web.Response:
        state.calls.append((request.method, request.path, None))
        state.source_at_reload.append(router_db.read_text())   # what Oxidized would load now
        return web.json_response("reloaded list of nodes", status=state.status)

    async def next_node(request: web.Request) -> web.Response:
        state.calls.append((request.method, request.path, await request.json()))
        return web.json_response("ok", status=state.status)

    app = web.Application()
    app.router.add_get("/reload.json", reload)
    app.router.add_put("/node/next/{node}", next_node)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


async def _rotate(env: dict[str, str], new: str = NEW, login: str = "netops1",
                  resource: R | None = None) -> ScriptResult:
    att = ScriptAttachment(str(SCRIPT), env=env)
    user = R("USER", f"{login} @ sw0001", "pamUser",
             fields=[F("login", value=[login]), F("password", value=[Secret(OLD)])],
             meta={"scripts": to_meta([att])})
    [result] = await run_rotation_scripts(
        get_record={}.__getitem__, provider=R("PROV", "PAM Configuration"),
        resource=resource or R("RES", "sw0001", "pamNetworkDevice"), user=user,
        new_password=Secret(new), old_password=Secret(OLD), base_env=BASE_ENV,
    )
    assert new not in result.stdout + result.stderr and OLD not in result.stdout + result.stderr
    return result


async def test_router_db_updated_then_oxidized_reloads_and_fetches_the_node(oxidized: Oxidized) -> None:
    result = await _rotate({"OXIDIZED_ROUTER_DB": str(oxidized.router_db), "OXIDIZED_URL": oxidized.url})
    assert result.ok, (result.error, result.stderr)
    expected = ROUTER_DB.replace(f"sw0001:ios:netops1:{OLD}", f"sw0001:ios:netops1:{NEW}")
    assert oxidized.router_db.read_text() == expected            # only that node's row of that user
    assert oxidized.router_db.stat().st_mode & 0o777 == 0o640
    assert oxidized.calls == [
        ("GET", "/reload.json", None),
        ("PUT", "/node/next/sw0001.json",
         {"user": "keyturn", "msg": "credential of netops1 rotated by keyturn"}),
    ]
    assert oxidized.source_at_reload == [expected]                # the file was written before the reload
    assert result.stdout.splitlines() == [
        f"{oxidized.router_db}: password of netops1 on sw0001 updated (1 row)",
        f"Oxidized at {oxidized.url}: source reloaded, sw0001 queued for the next fetch",
    ]


async def test_a_custom_column_map_and_node_name(oxidized: Oxidized) -> None:
    oxidized.router_db.write_text(f"core-1.example.net,netops1,{OLD},ios\n")
    env = {"OXIDIZED_ROUTER_DB": str(oxidized.router_db), "OXIDIZED_URL": oxidized.url,
           "OXIDIZED_DELIMITER": ",", "OXIDIZED_MAP": "name=0,username=1,password=2,model=3",
           "OXIDIZED_NODE": "core-1.example.net"}
    result = await _rotate(env)
    assert result.ok, (result.error, result.stderr)
    assert oxidized.router_db.read_text() == f"core-1.example.net,netops1,{NEW},ios\n"
    assert oxidized.calls[1][:2] == ("PUT", "/node/next/core-1.example.net.json")


async def test_a_password_the_csv_cannot_hold_changes_nothing(oxidized: Oxidized) -> None:
    result = await _rotate({"OXIDIZED_ROUTER_DB": str(oxidized.router_db), "OXIDIZED_URL": oxidized.url},
                           new="Has:Colon-2026")
    assert (result.ok, result.exit_code) == (False, 1)
    assert "contains ':', which Oxidized's CSV source cannot hold" in result.stderr
    assert oxidized.router_db.read_text() == ROUTER_DB and oxidized.calls == []


async def test_no_row_for_the_account_changes_nothing(oxidized: Oxidized) -> None:
    result = await _rotate({"OXIDIZED_ROUTER_DB": str(oxidized.router_db), "OXIDIZED_URL": oxidized.url},
                           login="ghost")
    assert (result.ok, result.exit_code) == (False, 1)
    assert "no row for node 'sw0001' with username 'ghost'" in result.stderr
    assert oxidized.router_db.read_text() == ROUTER_DB and oxidized.calls == []


async def test_oxidized_refusing_fails_the_script(oxidized: Oxidized) -> None:
    oxidized.status = 500
    result = await _rotate({"OXIDIZED_ROUTER_DB": str(oxidized.router_db), "OXIDIZED_URL": oxidized.url})
    assert (result.ok, result.exit_code) == (False, 1)
    assert f"Oxidized GET {oxidized.url}/reload.json: HTTP 500" in result.stderr
    assert f"netops1:{NEW}" in oxidized.router_db.read_text()   # the file is right; the fetch failed


async def test_rancid_cloginrc(tmp_path: Path) -> None:
    cloginrc = tmp_path / ".cloginrc"
    cloginrc.write_text(CLOGINRC.replace("PW", OLD))
    cloginrc.chmod(0o600)
    result = await _rotate({"RANCID_CLOGINRC": str(cloginrc)})
    assert result.ok, (result.error, result.stderr)
    assert cloginrc.read_text() == CLOGINRC.replace("PW", NEW)   # the enable secret and sw0002 kept
    assert cloginrc.stat().st_mode & 0o777 == 0o600
    refused = await _rotate({"RANCID_CLOGINRC": str(cloginrc)}, new="Has{Brace}2026")
    assert (refused.ok, refused.exit_code) == (False, 1) and "brace" in refused.stderr


async def test_without_a_file_to_update_it_says_what_to_set() -> None:
    result = await _rotate({})
    assert (result.ok, result.exit_code) == (False, 1)
    assert "set OXIDIZED_ROUTER_DB (and/or RANCID_CLOGINRC)" in result.stderr
    assert json.dumps(result.to_dict()).count(NEW) == 0


async def test_end_to_end_keyturn_rotates_and_oxidized_gets_the_new_password(
        oxidized: Oxidized, tmp_path: Path) -> None:
    """`keyturn script attach` + `keyturn rotate` against the lab switch: the rotation runs the recipe,
    router.db holds the password now on the device, and oxidized-web was asked to reload and fetch."""
    with automation_lab(tmp_path / "lab") as lab:
        oxidized.router_db.write_text(f"sw0001:ios:{USER}:stale-copy\nsw0001:ios:admin:unchanged\n")
        env = dict(lab.base_env)
        # the policy leaves out ':', Oxidized's CSV delimiter (the recipe refuses a password holding it)
        policy = {"length": 24, "caps": 4, "lowercase": 4, "digits": 4, "special": 4,
                  "specialChars": "!#%+=-_."}
        keyturn(env, lab.work, "rotation", "set", ACCOUNT, "--target", "iosxe-ssh", "--resource", "sw0001",
                "--admin", "sw0001 admin", "--policy", json.dumps(policy))
        if os.geteuid() == 0:   # scripts would run as `nobody`, who cannot write this test's router.db
            env["KEYTURN_SCRIPT_USER"] = "root"
        keyturn(env, lab.work, "script", "attach", ACCOUNT, str(SCRIPT),
                "--env", f"OXIDIZED_ROUTER_DB={oxidized.router_db}", "--env", f"OXIDIZED_URL={oxidized.url}")
        out = await asyncio.to_thread(keyturn, env, lab.work, "rotate", ACCOUNT)
        assert "1 rotated" in out, out
        current = lab.current()
        history = json.loads(lab.keyturn("history", ACCOUNT, "--json"))
    assert history["rotations"][0]["outcome"] == "rotated"      # not rotated_script_errors
    assert current != lab.initial
    assert oxidized.router_db.read_text() == f"sw0001:ios:{USER}:{current}\nsw0001:ios:admin:unchanged\n"
    assert [c[:2] for c in oxidized.calls] == [("GET", "/reload.json"), ("PUT", "/node/next/sw0001.json")]
    assert current not in out
