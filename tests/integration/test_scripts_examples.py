"""The example post-rotation scripts, run unmodified through the runner against the simulators."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from keyturn.scripts.attachments import ScriptAttachment, to_meta
from keyturn.scripts.runner import ScriptResult, run_rotation_scripts
from keyturn.secret import Secret
from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import IosXeDevice
from keyturn.sim.iosxe_restconf import RestconfFrontend
from keyturn.sim.meraki import MerakiFrontend
from keyturn.sim.meraki_proxy import MerakiProxy
from keyturn.sim.meraki_state import MerakiState
from keyturn.sim.tls import SimCA
from tests.script_records import F, R

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scripts"
NEW = "Rot8ted-Pass-2026"
OLD = "Old-Pass-2025x"
ADMIN_PW = "Adm1n-Pass-XYZ"
# The examples' own shebang (`#!/usr/bin/env python3`) must find an interpreter that has requests/httpx.
BASE_ENV = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}", "LANG": "C.UTF-8"}




def _user(login: str, old: str | None, atts: list[ScriptAttachment]) -> R:
    fields = [F("login", value=[login])]
    if old is not None:
        fields.append(F("password", value=[Secret(old)]))
    return R("USER", login, "pamUser", fields=fields, meta={"scripts": to_meta(atts)})


def _no_secrets(results: list[ScriptResult], *values: str) -> None:
    text = json.dumps([r.to_dict() for r in results])
    for value in values:
        assert value not in text


@dataclass
class Router:
    device: IosXeDevice
    port: int
    ca_file: Path


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[Router]:
    device = IosXeDevice("r1")
    device.set_user("admin", kind="secret", clear=ADMIN_PW, privilege=15)
    device.set_user("developer", kind="secret", clear=OLD, privilege=15)
    device.set_user("legacy", kind="password", clear=OLD, privilege=15)
    device.save()
    ca = SimCA.create()
    frontend = RestconfFrontend(device, Faults())
    port = await frontend.start("127.0.0.1", 0, ca.server_context("127.0.0.1"))
    try:
        yield Router(device, port, ca.write_ca(tmp_path / "ca.pem"))
    finally:
        await frontend.stop()


def _iosxe_records(router: Router, *, with_auth: bool = True, admin_pw: str = ADMIN_PW) -> dict[str, R]:
    resource = R("RES", "Router 1", "pamNetworkDevice",
                 custom=[F("text", label="host_endpoint", value=[f"127.0.0.1:{router.port}"])])
    auth = R("AUTH", "Cisco Authentication Record",
             fields=[F("login", value=["admin"]), F("password", value=[Secret(admin_pw)])])
    return {"RES": resource, "AUTH": auth} if with_auth else {"RES": resource}


async def _rotate_iosxe(router: Router, login: str, records: dict[str, R], old: str | None = OLD,
                        timeout: float = 60) -> list[ScriptResult]:
    att = ScriptAttachment(str(EXAMPLES / "iosxe_restconf_update.py"),
                           with_records=tuple(k for k in records if k == "AUTH"),
                           env={"REQUESTS_CA_BUNDLE": str(router.ca_file)}, timeout=timeout)
    return await run_rotation_scripts(
        get_record=records.__getitem__, provider=R("PROV", "PAM Configuration"), resource=records["RES"],
        user=_user(login, old, [att]), new_password=Secret(NEW),
        old_password=Secret(old) if old else None, base_env=BASE_ENV,
    )


async def test_iosxe_example_rotates_saves_and_verifies(router: Router) -> None:
    [result] = await _rotate_iosxe(router, "developer", _iosxe_records(router))
    assert result.ok, (result.error, result.stderr)
    assert result.stdout == f"secret of 'developer' updated and saved on 127.0.0.1:{router.port}\n"
    assert router.device.authenticate("developer", NEW) is not None
    assert router.device.authenticate("developer", OLD) is None
    router.device.reboot()  # saved to startup-config: survives a reload
    assert router.device.authenticate("developer", NEW) is not None
    _no_secrets([result], NEW, OLD, ADMIN_PW)


async def test_iosxe_example_self_rotation_keeps_password_kind(router: Router) -> None:
    [result] = await _rotate_iosxe(router, "legacy", _iosxe_records(router, with_auth=False))
    assert result.ok, (result.error, result.stderr)
    user = router.device.user("legacy")
    assert user is not None and user.credential is not None and user.credential.kind == "password"
    assert router.device.authenticate("legacy", NEW) is not None


async def test_iosxe_example_fails_for_a_missing_user(router: Router) -> None:
    [result] = await _rotate_iosxe(router, "ghost", _iosxe_records(router))
    assert (result.ok, result.exit_code) == (False, 1)
    assert "does not exist on the device" in result.stderr
    assert router.device.user("ghost") is None


async def test_iosxe_example_fails_on_bad_admin_credential(router: Router) -> None:
    [result] = await _rotate_iosxe(router, "developer", _iosxe_records(router, admin_pw="wrong-one"))
    assert (result.ok, result.exit_code) == (False, 1)
    assert "HTTP 401" in result.stderr
    assert router.device.authenticate("developer", OLD) is not None


async def test_iosxe_example_fails_when_device_refuses(router: Router) -> None:
    router.device.running.min_length = 64
    [result] = await _rotate_iosxe(router, "developer", _iosxe_records(router))
    assert (result.ok, result.exit_code) == (False, 1)
    assert "setting the new secret failed: HTTP 400" in result.stderr


@dataclass
class MerakiLab:
    state: MerakiState
    network_id: str
    api_key: str
    env: dict[str, str]


@pytest.fixture
async def meraki(tmp_path: Path) -> AsyncIterator[MerakiLab]:
    state = MerakiState(seed=7)
    org = state.add_org("Lab")
    net = state.add_network(org.id, "Branch 1")
    state.add_auth_user(net.id, "jane@example.com", OLD)
    key = state.add_api_key()
    ca = SimCA.create()
    frontend = MerakiFrontend(state)
    proxy = MerakiProxy(await frontend.start("127.0.0.1", 0), ca)
    proxy_port = await proxy.start("127.0.0.1", 0)
    env = {"HTTPS_PROXY": f"http://127.0.0.1:{proxy_port}",
           "REQUESTS_CA_BUNDLE": str(ca.write_ca(tmp_path / "meraki-ca.pem")), "NO_PROXY": ""}
    try:
        yield MerakiLab(state, net.id, key, env)
    finally:
        await proxy.stop()
        await frontend.stop()


async def _rotate_meraki(lab: MerakiLab, email: str) -> ScriptResult:
    auth = R("AUTH", "Cisco Authentication Record",
             fields=[F("login", value=["api"]), F("password", value=[Secret(lab.api_key)])],
             custom=[F("text", label="network_id", value=[lab.network_id])])
    # Proxy + CA are configured per attachment: the runner passes nothing of keyturn's own env by chance.
    att = ScriptAttachment(str(EXAMPLES / "meraki_update_user.py"), with_records=("AUTH",), env=lab.env)
    [result] = await run_rotation_scripts(
        get_record={"AUTH": auth}.__getitem__, provider=R("PROV", "PAM Configuration"), resource=None,
        user=_user(email, OLD, [att]), new_password=Secret(NEW), old_password=Secret(OLD),
        base_env=BASE_ENV,
    )
    return result


async def test_meraki_example_through_the_api_meraki_com_proxy(meraki: MerakiLab) -> None:
    result = await _rotate_meraki(meraki, "jane@example.com")
    assert result.ok, (result.error, result.stderr)
    assert result.stdout == "Password updated successfully for user jane@example.com\n"
    assert meraki.state.verify_login(meraki.network_id, "jane@example.com", NEW)
    assert not meraki.state.verify_login(meraki.network_id, "jane@example.com", OLD)
    _no_secrets([result], NEW, OLD, meraki.api_key)


async def test_meraki_example_unknown_user_exits_non_zero(meraki: MerakiLab) -> None:
    result = await _rotate_meraki(meraki, "nobody@example.com")
    assert (result.ok, result.exit_code) == (False, 1)
    assert "No user found with the email: nobody@example.com" in result.stderr


async def test_log_rotation_example_never_logs_the_password(tmp_path: Path) -> None:
    log = tmp_path / "rotations.log"
    att = ScriptAttachment(str(EXAMPLES / "log_rotation.sh"), env={"KEYTURN_EXAMPLE_LOG": str(log)})
    results = []
    for _ in range(2):
        results += await run_rotation_scripts(
            get_record={}.__getitem__, provider=R("PROV", "cfg"), resource=None,
            user=_user("developer", OLD, [att]), new_password=Secret(NEW), old_password=Secret(OLD),
            base_env=BASE_ENV,
        )
    assert [r.ok for r in results] == [True, True], [r.stderr for r in results]
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" rotated user=developer userRecordUid=USER resourceRecordUid=")
    assert NEW not in log.read_text() and OLD not in log.read_text()


async def test_notify_webhook_example_posts_a_non_secret_notice(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        att = ScriptAttachment(str(EXAMPLES / "notify_webhook.py"),
                               env={"KEYTURN_NOTIFY_URL": f"http://127.0.0.1:{port}/hook"})
        [result] = await run_rotation_scripts(
            get_record={}.__getitem__, provider=R("PROV", "cfg"), resource=R("RES", "dev"),
            user=_user("developer", OLD, [att]), new_password=Secret(NEW), old_password=Secret(OLD),
            base_env=BASE_ENV,
        )
    finally:
        await runner.cleanup()
    assert result.ok, (result.error, result.stderr)
    [notice] = received
    assert {k: notice[k] for k in ("event", "user", "userRecordUid", "resourceRecordUid")} == {
        "event": "password_rotated", "user": "developer", "userRecordUid": "USER", "resourceRecordUid": "RES"}
    assert NEW not in json.dumps(notice) and OLD not in json.dumps(notice)
