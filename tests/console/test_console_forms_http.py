"""Schedules and profiles pages over HTTP (real app, real SQLite vault): shown to readers, changed by
operators and admins through the CLI's own functions — so a bad value gets the CLI's error text, inline
next to its field, and nothing is saved — refused (403) for auditors and consumers and without CSRF."""

from __future__ import annotations

import html

import pytest

from keyturn.engine.profile import META_KEY as PROFILE_KEY
from keyturn.scheduler.schedules import META_KEY as SCHEDULE_KEY
from tests.console.console_world import console_client, csrf_of, signin
from tests.unit.api_world import Api


def _meta(api: Api, uid: str) -> dict[str, object]:
    return dict(api.world.vault.get(uid).meta)


async def test_schedules_set_clear_and_refuse_bad_values_with_the_cli_text(api: Api) -> None:
    world = api.world
    async with console_client(api) as c:
        await signin(c, api.tokens["operator"])
        token = await csrf_of(c, "/console/schedules")
        base = {"csrf_token": token, "record": "u1", "spec": "0 2 * * sun", "tz": "", "window": "",
                "jitter": ""}
        for change, field, message in (
                ({"spec": "61 * * * *"}, "spec", "invalid cron expression '61 * * * *'"),
                ({"tz": "Mars/Base"}, "tz", "unknown time zone 'Mars/Base': use an IANA name"),
                ({"window": "Xyz 99"}, "window", "bad maintenance window 'Xyz 99'"),
                ({"jitter": "lots"}, "jitter", "bad jitter 'lots'"),
                ({"record": "sw1-admin"}, "record", "record 'sw1-admin' has no rotation profile"),
                ({"record": "nobody"}, "record", "nobody")):
            r = await c.post("/console/schedules", data={**base, **change})
            assert r.status_code == 422, change
            page = html.unescape(r.text)
            assert message in page, (change, page[-2000:])
            assert f'id="s-{field}" name="{field}"' in r.text
            assert r.text.index('aria-invalid="true"') > r.text.index(f'id="s-{field}"')
            assert f'value="{html.escape(next(iter(change.values())), quote=True)}"' in r.text   # kept
        assert SCHEDULE_KEY not in _meta(api, world.user)
        assert world.vault.audit.list(action="schedule.set") == []
        r = await c.post("/console/schedules", data={**base, "tz": "Europe/Zurich", "jitter": "10m"})
        assert r.status_code == 303
        listing = await c.get("/console/schedules")
        assert "schedule set on u1" in listing.text and "u1" in listing.text
        stored = _meta(api, world.user)[SCHEDULE_KEY]
        assert isinstance(stored, dict) and stored["tz"] == "Europe/Zurich"
        prefilled = await c.get("/console/schedules", params={"record": world.user})
        assert 'value="0 2 * * sun"' in prefilled.text and 'value="Europe/Zurich"' in prefilled.text
        entry = world.vault.audit.list(action="schedule.set")[0]
        assert entry.actor.startswith("api:t-operator#")
        r = await c.post("/console/schedules/clear", data={"csrf_token": token, "record": world.user})
        assert r.status_code == 303 and _meta(api, world.user).get(SCHEDULE_KEY) is None
        assert "rotated on demand only" in (await c.get("/console/schedules")).text


async def test_profiles_show_and_set_through_set_profile_with_its_errors(api: Api) -> None:
    world = api.world
    before = _meta(api, world.user)[PROFILE_KEY]
    async with console_client(api) as c:
        await signin(c, api.tokens["operator"])
        listing = await c.get("/console/profiles")
        assert listing.status_code == 200 and f'href="/console/profiles/{world.user}"' in listing.text
        opened = await c.get("/console/profiles", params={"record": "u1"})
        assert opened.status_code == 303 and opened.headers["location"] == f"/console/profiles/{world.user}"
        form = await c.get(f"/console/profiles/{world.user}")
        assert form.status_code == 200 and 'value="sw1"' in form.text       # the resource by title
        token = await csrf_of(c, f"/console/profiles/{world.user}")
        base = {"csrf_token": token, "target": "noop", "resource": "", "admin": "", "configuration": "",
                "policy": "", "verify_with": "", "max_attempts": "3", "site": ""}
        for change, message in (
                ({"target": "teleport"}, "unknown target"),
                ({"target": "iosxe-ssh"}, "target iosxe-ssh needs --resource"),
                ({"mode": "loud"}, "profile option mode must be one of auto, secret, password, not 'loud'"),
                ({"site": "mars"}, "unknown site 'mars'"),
                ({"policy": "8,9,9,9,9"}, "policy"),
                ({"max_attempts": "0"}, "--max-attempts must be a whole number 1-20"),
                ({"target": ""}, "--target KIND is required")):
            r = await c.post(f"/console/profiles/{world.user}", data={**base, **change})
            assert r.status_code == 422, change
            assert message in html.unescape(r.text), (change, html.unescape(r.text)[-3000:])
            assert 'role="alert"' in r.text
        assert _meta(api, world.user)[PROFILE_KEY] == before
        assert world.vault.audit.list(action="rotation.profile_set") == []
        r = await c.post(f"/console/profiles/{world.user}", data={
            **base, "target": "noop", "verify_with": "iosxe-ssh", "resource": "sw1", "policy": "20,2,2,2,2"})
        assert r.status_code == 303, html.unescape(r.text)[-2000:]
        shown = await c.get(r.headers["location"])
        assert "rotation profile set on u1: target noop" in shown.text
    stored = _meta(api, world.user)[PROFILE_KEY]
    assert isinstance(stored, dict) and stored["target"] == "noop"
    assert stored["resource"] == world.resource.uid
    assert world.vault.audit.list(action="rotation.profile_set")[0].actor.startswith("api:t-operator#")


@pytest.mark.parametrize("role", ["auditor", "consumer"])
async def test_auditors_and_consumers_change_nothing(api: Api, role: str) -> None:
    world = api.world
    before = _meta(api, world.user)
    async with console_client(api) as c:
        await signin(c, api.tokens[role])
        token = await csrf_of(c)
        if role == "auditor":
            page = await c.get("/console/schedules")
            assert page.status_code == 200 and "Save schedule" not in page.text
            form = await c.get(f"/console/profiles/{world.user}")
            assert form.status_code == 200 and "Save profile" not in form.text and " disabled" in form.text
        for path, data in (("/console/schedules", {"record": "u1", "spec": "every 30d"}),
                           ("/console/schedules/clear", {"record": "u1"}),
                           ("/console/schedules/reset", {"record": "u1"}),
                           (f"/console/profiles/{world.user}", {"target": "noop",
                                                                "verify_with": "iosxe-ssh"})):
            r = await c.post(path, data={"csrf_token": token, **data})
            assert r.status_code == 403, path
    assert _meta(api, world.user) == before
    assert {e.action for e in world.vault.audit.list()} <= {"api.denied", "console.signin", "record.add",
                                                               "record.meta", "vault.init"}
