"""The accounts page over HTTP (real app, real SQLite vault): paging and filters over the same view as
`keyturn status` / GET /accounts, the CLI's error text for a bad filter, and bulk "rotate now" — started
through the API's path, refused without CSRF or for roles that may not rotate, nothing started then."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest

from keyturn.accounts_view import AccountQuery, list_accounts
from keyturn.engine.profile import RotationProfile
from keyturn.vault.api import NewRecord
from tests.console.console_world import console_client, csrf_of, signin
from tests.unit.api_world import Api, open_api
from tests.unit.engine_world import World, open_world

FLEET = 120


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One fleet for the module (seeding it is the slow part); each test counts what it changes."""
    for w in open_world(tmp_path_factory.mktemp("accounts")):
        profile = RotationProfile(target="fake", resource=w.resource.uid).to_meta()
        w.vault.add_many([NewRecord(type="pamUser", title=f"acct{i:03d}", meta={
            "rotation": profile, "tags": ["even" if i % 2 == 0 else "odd"]}) for i in range(FLEET)])
        yield w


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    async for a in open_api(world):
        yield a


def _titles(page: str) -> list[str]:
    return re.findall(r'<a href="/console/accounts/[^"]+">([^<]+)</a>', page)


async def test_accounts_are_paged_and_filtered_as_the_shared_view(api: Api) -> None:
    engine = api.world.vault.engine
    async with console_client(api) as c:
        await signin(c, api.tokens["auditor"])
        first = await c.get("/console/accounts")
        assert first.status_code == 200
        everything = [a.title for a in list_accounts(engine).accounts]
        assert _titles(first.text) == everything[:50] and f"({FLEET + 1})" in first.text
        third = await c.get("/console/accounts", params={"page": 3})
        assert _titles(third.text) == everything[100:]
        assert "Page 3 of 3" in third.text and 'rel="next"' not in third.text
        odd = await c.get("/console/accounts", params={"tag": "odd", "q": "acct0"})
        query = AccountQuery(filter="title~acct0", tag="odd")
        want = [a.title for a in list_accounts(engine, query).accounts]
        assert _titles(odd.text) == want[:50] and len(want) == 50
        expr = await c.get("/console/accounts", params={"q": "title=acct007,target=fake"})
        assert _titles(expr.text) == ["acct007"]
        never = await c.get("/console/accounts", params={"outcome": "never", "page": 2})
        assert "Page 2 of 3" in never.text
        for params, message in (({"q": "colour=red"}, "bad filter term &#39;colour=red&#39;"),
                                ({"outcome": "great"}, "unknown outcome &#39;great&#39;"),
                                ({"q": "a,b"}, "a comma separates filter terms")):
            bad = await c.get("/console/accounts", params=params)
            assert bad.status_code == 422 and message in bad.text and 'aria-invalid="true"' in bad.text
        assert (await c.get("/console/accounts", params={"page": "zero"})).status_code == 422
        assert "Rotate selected now" not in first.text and 'name="record"' not in first.text


async def test_bulk_rotate_now_starts_the_selection_through_the_api_path(api: Api) -> None:
    world = api.world
    before = len(world.vault.audit.list(action="api.rotate"))
    async with console_client(api) as c:
        await signin(c, api.tokens["operator"])
        page = await c.get("/console/accounts", params={"q": "u1"})
        assert "Rotate selected now" in page.text and f'value="{world.user}"' in page.text
        token = await csrf_of(c, "/console/accounts")
        r = await c.post("/console/accounts/rotate", data={"csrf_token": token, "record": [world.user],
                                                           "back": "/console/accounts?q=u1"})
        assert r.status_code == 202, r.text
        rid = re.search(r'href="/console/rotations/([^"]+)"', r.text)
        assert rid is not None and 'href="/console/accounts?q=u1"' in r.text
        done = await api.wait_rotation(rid.group(1))
        assert done["outcome"] == "rotated" and world.dev.password("netops") == world.current()
        entry = world.vault.audit.list(action="api.rotate")[0]          # newest first
        assert entry.record_uid == world.user and entry.actor.startswith("api:t-operator#")
        # One unknown record refuses the whole selection: nothing starts.
        r = await c.post("/console/accounts/rotate", data={"csrf_token": token,
                                                           "record": [world.user, "no-such-record"]})
        assert r.status_code == 422 and "nothing was started" in r.text
        r = await c.post("/console/accounts/rotate", data={"csrf_token": token})
        assert r.status_code == 422 and "select at least one account" in r.text
        r = await c.post("/console/accounts/rotate", data={"record": [world.user]})
        assert r.status_code == 403
    assert len(world.vault.audit.list(action="api.rotate")) == before + 1


@pytest.mark.parametrize("role", ["auditor", "consumer"])
async def test_roles_that_may_not_rotate_get_403_and_nothing_starts(api: Api, role: str) -> None:
    before = len(api.world.vault.audit.list(action="api.rotate"))
    async with console_client(api) as c:
        await signin(c, api.tokens[role])
        token = await csrf_of(c)
        r = await c.post("/console/accounts/rotate", data={"csrf_token": token, "record": [api.world.user]})
        assert r.status_code == 403 and "Nothing was changed" in r.text
    assert len(api.world.vault.audit.list(action="api.rotate")) == before
    assert api.app.state.ctx.runner.queue_depth == 0 and api.app.state.ctx.runner.in_flight == 0
    assert api.world.vault.audit.list(action="api.denied")[0].details["role"] == role   # newest first
