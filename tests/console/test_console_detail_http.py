"""The account, rotation, reveal and audit pages over HTTP against the real app and a real SQLite vault
(the fake device of tests/unit/engine_world): what each page shows, and every bad input answered with a
clear error and nothing changed. The same pages in Chromium: test_browser_*.py."""

from __future__ import annotations

import asyncio
import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from keyturn.audit.export import pages, render
from keyturn.vault import Field
from tests.console.console_world import console_client, csrf_of, signin
from tests.unit.api_world import Api


def _rotation_id(location: str) -> str:
    m = re.search(r"rotation=([0-9a-f]+)", location)
    assert m is not None, location
    return m.group(1)


async def test_rotate_now_progress_and_the_rotation_page(api: Api) -> None:
    uid = api.world.user
    async with console_client(api) as c:
        await signin(c, api.tokens["operator"])
        page = await c.get(f"/console/accounts/{uid}")
        assert page.status_code == 200 and "Rotate now" in page.text and "never rotated" in page.text
        assert "Reveal the password" not in page.text          # operators reveal nothing
        csrf = await csrf_of(c, f"/console/accounts/{uid}")
        started = await c.post(f"/console/accounts/{uid}/rotate", data={"csrf_token": csrf})
        assert started.status_code == 303
        rid = _rotation_id(started.headers["location"])
        await api.wait_rotation(rid)
        fragment = await c.get(f"/console/rotations/{rid}/progress")
        assert fragment.headers["x-rotation-state"] == "settled"
        assert 'id="progress-outcome">rotated<' in fragment.text and "<html" not in fragment.text
        detail = await c.get(f"/console/rotations/{rid}")
        assert detail.status_code == 200 and "verify new" in detail.text and "Proved" in detail.text
        again = await c.get(f"/console/accounts/{uid}")
        assert "rotated" in again.text and ">current<" in again.text and ">previous<" in again.text
        assert api.world.vault.secret(uid).reveal() not in again.text        # states, never values
    assert [e.details["request_id"] for e in api.world.vault.audit.list(action="api.rotate")] == [rid]


async def test_unknown_accounts_and_rotations_are_404_and_bad_ids_422(api: Api) -> None:
    plain = api.world.vault.add(type="pamUser", title="no profile").uid
    async with console_client(api) as c:
        await signin(c, api.tokens["auditor"])
        for path, code, text in ((f"/console/accounts/{plain}", 404, "no managed account"),
                                 ("/console/accounts/nosuchuid", 404, "no managed account"),
                                 ("/console/rotations/0123abcd", 404, "no rotation with id"),
                                 ("/console/rotations/0123abcd/progress", 404, "no rotation with id"),
                                 ("/console/rotations/not-hex!", 422, "invalid value"),
                                 (f"/console/accounts/{api.world.user}?rotation=%3Cx%3E", 422,
                                  "invalid value")):
            r = await c.get(path)
            assert (r.status_code, text in r.text) == (code, True), (path, r.status_code)


async def test_rotate_now_refused_for_readers_without_csrf_and_for_records_without_profile(api: Api) -> None:
    plain = api.world.vault.add(type="pamUser", title="no profile").uid
    async with console_client(api) as c:
        await signin(c, api.tokens["operator"])
        csrf = await csrf_of(c)
        assert (await c.post(f"/console/accounts/{api.world.user}/rotate", data={})).status_code == 403
        no_profile = await c.post(f"/console/accounts/{plain}/rotate", data={"csrf_token": csrf})
        assert no_profile.status_code == 422 and "rotation profile" in no_profile.text
    async with console_client(api) as c:
        await signin(c, api.tokens["auditor"])
        csrf = await csrf_of(c)
        r = await c.post(f"/console/accounts/{api.world.user}/rotate", data={"csrf_token": csrf})
        assert r.status_code == 403 and "Nothing was changed" in r.text
    assert api.world.vault.audit.list(action="api.rotate") == []
    assert api.world.states() == ["current"]


async def test_reveal_bad_inputs_and_roles(api: Api) -> None:
    uid = api.world.user
    async with console_client(api) as c:
        await signin(c, api.tokens["admin"])
        csrf = await csrf_of(c, f"/console/reveal?record={uid}")
        form = {"csrf_token": csrf, "record": uid, "token": api.tokens["admin"]}
        for bad, code, text in (({"record": ""}, 422, "Name the record"),
                                ({"version": "two"}, 422, "whole number"),
                                ({"token": api.tokens["auditor"]}, 401, "nothing was revealed"),
                                ({"token": ""}, 401, "nothing was revealed"),
                                ({"record": "no such record"}, 404, "no such record"),
                                ({"field": "nosuchfield"}, 422, "nosuchfield")):
            r = await c.post("/console/reveal", data={**form, **bad})
            assert (r.status_code, text in r.text) == (code, True), (bad, r.status_code, r.text[-400:])
            assert 'id="revealed"' not in r.text
        shown = await c.post("/console/reveal", data=form)
        assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
        assert api.world.vault.secret(uid).reveal() in shown.text
        old = await c.post("/console/reveal", data={**form, "version": "1"})
        assert old.status_code == 200 and 'id="revealed"' in old.text
    assert len(api.world.vault.audit.list(action="reveal")) == 2
    assert len(api.world.vault.audit.list(action="console.reveal_denied")) == 2
    for role, code in (("auditor", 403), ("operator", 403), ("consumer", 403)):
        async with console_client(api) as c:
            await signin(c, api.tokens[role])
            csrf = await csrf_of(c)
            r = await c.post("/console/reveal", data={"csrf_token": csrf, "record": uid, "version": "1",
                                                      "token": api.tokens[role]})
            assert r.status_code == code and 'id="revealed"' not in r.text, role
    assert len(api.world.vault.audit.list(action="reveal")) == 2


async def test_audit_paging_filters_errors_export_and_chain(api: Api) -> None:
    vault = api.world.vault
    for i in range(60):
        vault.audit.append("test.event", actor=f"tester{i % 2}", details={"n": i})
    async with console_client(api) as c:
        await signin(c, api.tokens["auditor"])
        first = await c.get("/console/audit", params={"action": "test.event"})
        assert first.status_code == 200 and first.text.count('"n":') == 50
        older = re.search(r'href="(/console/audit\?[^"]*before=\d+)"', first.text)
        assert older is not None
        second = await c.get(older.group(1).replace("&amp;", "&"))
        assert second.text.count('"n":') == 10 and "before=" not in second.text.split("Newest")[1][:200]
        one = await c.get("/console/audit", params={"actor": "tester1", "action": "test.event"})
        assert one.text.count('"n":') == 30
        for params, text in (({"from": "2026-13-40"}, "from '2026-13-40': expected an ISO 8601 time"),
                             ({"from": "1d", "to": "2d"}, "to must be after from")):
            bad = await c.get("/console/audit", params=params)
            assert bad.status_code == 422 and text in html.unescape(bad.text)
        chain = await c.get("/console/audit/chain")
        assert "Intact:" in chain.text
        csrf = await csrf_of(c, "/console/audit")
        cef = await c.post("/console/audit/export", data={"csrf_token": csrf, "from": "1h", "format": "cef"})
        assert cef.status_code == 200 and "attachment" in cef.headers["content-disposition"]
        assert all(line.startswith("CEF:0|") for line in cef.text.splitlines()) and cef.text.count("\n") > 60
        bad_format = await c.post("/console/audit/export", data={"csrf_token": csrf, "format": "xml"})
        assert bad_format.status_code == 422 and "format 'xml'" in html.unescape(bad_format.text)
        assert (await c.post("/console/audit/export", data={"format": "jsonl"})).status_code == 403
    exports = vault.audit.list(action="audit.export")
    assert [e.details["format"] for e in exports] == ["cef"] and exports[0].details["output"] == "console"
    async with console_client(api) as c:
        await signin(c, api.tokens["operator"])
        assert (await c.get("/console/audit")).status_code == 403       # audit:read is not an operator's


async def test_export_streams_what_the_cli_writes(api: Api) -> None:
    vault = api.world.vault
    async with console_client(api) as c:
        await signin(c, api.tokens["admin"])
        csrf = await csrf_of(c, "/console/audit")
        got = await c.post("/console/audit/export", data={"csrf_token": csrf, "from": "2000-01-01"})
    start = datetime(2000, 1, 1, tzinfo=UTC)
    lines = got.text.splitlines()
    want = [render(e, "jsonl") for page in await asyncio.to_thread(lambda: list(pages(vault, start, None)))
            for e in page]
    assert lines == want[:len(lines)] and len(lines) >= len(want) - 1   # the export's own entry comes after
    assert [json.loads(x)["id"] for x in lines] == list(range(1, len(lines) + 1))


async def test_script_output_is_for_admins_only(api: Api, tmp_path: Path) -> None:
    from keyturn.scripts.attachments import ScriptAttachment, to_meta

    script = tmp_path / "notify.sh"
    script.write_text("#!/bin/sh\necho SCRIPT-SAYS-HELLO\n")
    script.chmod(0o755)
    uid = api.world.user
    api.world.vault.set_meta(uid, "scripts", to_meta([ScriptAttachment(script=str(script))]))
    async with console_client(api) as c:
        await signin(c, api.tokens["operator"])
        csrf = await csrf_of(c, f"/console/accounts/{uid}")
        started = await c.post(f"/console/accounts/{uid}/rotate", data={"csrf_token": csrf})
        rid = _rotation_id(started.headers["location"])
        assert (await api.wait_rotation(rid))["outcome"] == "rotated"
        for path in (f"/console/rotations/{rid}", f"/console/accounts/{uid}"):
            page = await c.get(path)
            assert "notify.sh" in page.text and "SCRIPT-SAYS-HELLO" not in page.text, path
    async with console_client(api) as c:
        await signin(c, api.tokens["admin"])
        for path in (f"/console/rotations/{rid}", f"/console/accounts/{uid}",
                     f"/console/rotations/{rid}/progress"):
            assert "SCRIPT-SAYS-HELLO" in (await c.get(path)).text, path


async def test_a_running_rotation_is_followed_on_its_page(api: Api) -> None:
    uid = api.world.user
    gate = asyncio.Event()
    api.world.targets["fake"].gate = gate        # the device holds the change until the test lets go
    async with console_client(api) as c:
        await signin(c, api.tokens["auditor"])
        started = await api.client.post("/rotations", json={"records": [uid]}, headers=api.auth("operator"))
        rid = started.json()["rotations"][0]["id"]
        for _ in range(2000):
            running = await c.get(f"/console/rotations/{rid}/progress")
            if 'data-step="write_ahead"' in running.text:
                break
            await asyncio.sleep(0.005)
        assert running.headers["x-rotation-state"] == "running"
        page = await c.get(f"/console/rotations/{rid}")
        assert f'data-progress-url="/console/rotations/{rid}/progress"' in page.text
        assert "progress.js" in page.text and "followed below" in page.text
        gate.set()
        await api.wait_rotation(rid)
        page = await c.get(f"/console/rotations/{rid}")
        assert "data-progress-url" not in page.text and "progress.js" not in page.text


async def test_device_trust_as_pinned_and_when_the_device_record_is_gone(api: Api) -> None:
    world = api.world
    # What the page reads is the profile's target kind and the device record's custom fields.
    pinned = world.add_user("u2", "netops", "Passw0rd-2", target="iosxe-restconf")
    ssh = world.add_user("u3", "netops", "Passw0rd-3", target="iosxe-ssh")
    world.vault.update(world.resource.uid, custom=[Field("text", "fingerprint", ["AB" * 32]),
                                                   Field("text", "ssh_host_key", ["accept-any"])],
                       actor="test")
    async with console_client(api) as c:
        await signin(c, api.tokens["auditor"])
        tls = html.unescape((await c.get(f"/console/accounts/{pinned}")).text)
        assert ">pinned<" in tls and "fingerprint " + "AB" * 32 in tls
        unchecked = html.unescape((await c.get(f"/console/accounts/{ssh}")).text)
        assert ">not checked<" in unchecked and "ssh_host_key=accept-any" in unchecked
        fake = (await c.get(f"/console/accounts/{world.user}")).text
        assert "talks to no device itself" in fake
        world.vault.remove(world.resource.uid, actor="test")
        gone = await c.get(f"/console/accounts/{pinned}")
    assert gone.status_code == 200 and "the device record cannot be read" in gone.text
