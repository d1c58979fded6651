"""The Meraki walk (organisations → networks → auth users) against `httpx.MockTransport`: pagination,
429 then success, an organisation that errors, a 429 storm on one network; and the plan built from it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.config import Settings
from keyturn.discovery import (
    CREATE,
    MANAGED,
    SKIP,
    apply_plan,
    meraki_endpoint,
    plan_meraki,
    scan_meraki,
)
from keyturn.engine.profile import set_profile
from keyturn.engine.ratelimit import OrgBudgets
from keyturn.errors import KeyturnError, TargetError
from keyturn.secret import Secret
from keyturn.targets.base import AdminCredential, Discovering, Endpoint
from keyturn.targets.meraki import MerakiAuthUserTarget
from keyturn.vault import Field, Vault

KEY = "6bec40cf957de430a6f1f2baf056b99a4fac9ea0"
BASE = "https://api.meraki.com/api/v1"
ADMIN = AdminCredential("api", Secret(KEY))
ENDPOINT = Endpoint(host="api.meraki.com", base_url=BASE)
Handler = Callable[[httpx.Request], "httpx.Response | None"]


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def user(email: str, *, admin: bool = False) -> dict[str, Any]:
    return {"id": email.encode().hex(), "email": email, "name": email.split("@")[0],
            "accountType": "802.1X", "isAdmin": admin, "authorizations": []}


class FakeDashboard:
    """Three organisations: o1 (networks over two pages), o2 (networks refused), o3 (a 429 first)."""

    def __init__(self) -> None:
        self.orgs = [{"id": "o1", "name": "Acme"}, {"id": "o2", "name": "Broken"},
                     {"id": "o3", "name": "Busy"}]
        self.networks = {"o1": [{"id": "N_1", "name": "HQ"}, {"id": "N_2", "name": "Branch"}],
                         "o3": [{"id": "N_3", "name": "Store"}]}
        self.users = {"N_1": [user("a@x.com"), user("admin@x.com", admin=True)], "N_2": [user("b@x.com")],
                      "N_3": [user("c@x.com")]}
        self.script: dict[str, list[httpx.Response]] = {}   # path → answers given before the real one
        self.requests: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        self.requests.append(path)
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return httpx.Response(401, json={"errors": ["Invalid API key"]})
        queued = self.script.get(path)
        if queued:
            return queued.pop(0)
        if path == "/organizations":
            return httpx.Response(200, json=self.orgs)
        if path == "/organizations/o2/networks":
            return httpx.Response(403, json={"errors": ["You do not have access to that organization"]})
        if path.startswith("/organizations/") and path.endswith("/networks"):
            nets = self.networks[path.split("/")[2]]
            after = request.url.params.get("startingAfter")
            if after is None:  # first page of one network, Link to the rest (absolute, unquoted rel)
                if len(nets) == 1:
                    return httpx.Response(200, json=nets)
                link = f"<{BASE}{path}?perPage=1&startingAfter={nets[0]['id']}>; rel=next"
                return httpx.Response(200, json=nets[:1], headers={"Link": link})
            rest = [n for n in nets if n["id"] > after]
            return httpx.Response(200, json=rest)
        if path.startswith("/networks/") and path.endswith("/merakiAuthUsers"):
            return httpx.Response(200, json=self.users[path.split("/")[2]])
        return httpx.Response(404, json={"errors": ["Not found"]})


@pytest.fixture
def dashboard() -> FakeDashboard:
    return FakeDashboard()


@pytest.fixture
def target(dashboard: FakeDashboard) -> MerakiAuthUserTarget:
    time = FakeTime()

    def factory(endpoint: Endpoint) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(dashboard.handler))

    budgets = OrgBudgets(clock=time.clock, sleep=time.sleep)
    return MerakiAuthUserTarget(factory, budget=budgets, sleep=time.sleep, clock=time.clock)


def limited(retry_after: str = "1") -> httpx.Response:
    return httpx.Response(429, json={"errors": ["API rate limit exceeded for organization"]},
                          headers={"Retry-After": retry_after})


async def test_walk_lists_every_page_and_reports_the_org_that_errors(dashboard: FakeDashboard,
                                                                     target: MerakiAuthUserTarget) -> None:
    assert isinstance(target, Discovering)
    dashboard.script["/organizations/o3/networks"] = [limited()]   # 429 then success
    scans = await scan_meraki(target, ENDPOINT, ADMIN)
    found = {(s.org_id, s.network_id): [f.username for f in s.found] for s in scans if not s.error}
    assert found == {("o1", "N_1"): ["a@x.com", "admin@x.com"], ("o1", "N_2"): ["b@x.com"],
                     ("o3", "N_3"): ["c@x.com"]}
    errors = [(s.source, s.error) for s in scans if s.error]
    assert len(errors) == 1
    assert errors[0][0] == "Broken (o2)" and "may not do this" in errors[0][1]
    assert target.budget.pacer("o3").penalties == 1   # the 429 was charged to that organisation
    assert dashboard.requests.count("/organizations/o1/networks") == 2   # two pages
    admin_user = next(f for s in scans for f in s.found if f.username == "admin@x.com")
    assert not admin_user.rotatable and "Dashboard administrator" in admin_user.note


async def test_429_storm_on_one_network_is_a_row_the_others_still_listed(
        dashboard: FakeDashboard, target: MerakiAuthUserTarget) -> None:
    dashboard.script["/networks/N_2/merakiAuthUsers"] = [limited("0")] * 10
    scans = await scan_meraki(target, ENDPOINT, ADMIN, org="o1")
    by_net = {s.network_id: s for s in scans}
    assert "rate limited" in by_net["N_2"].error
    assert [f.username for f in by_net["N_1"].found] == ["a@x.com", "admin@x.com"]


async def test_network_filter_and_the_org_listing_failing(dashboard: FakeDashboard,
                                                          target: MerakiAuthUserTarget) -> None:
    scans = await scan_meraki(target, ENDPOINT, ADMIN, org="o1", network_filter="branch")
    assert [s.network_id for s in scans] == ["N_2"]
    assert "/organizations" not in dashboard.requests   # --org: no organisation listing
    bad = await scan_meraki(target, ENDPOINT, AdminCredential("api", Secret("wrong")))
    assert len(bad) == 1 and "listing the organisations" in bad[0].error and "refused" in bad[0].error
    assert KEY not in bad[0].error


async def test_a_pagination_link_to_another_host_is_refused(dashboard: FakeDashboard,
                                                            target: MerakiAuthUserTarget) -> None:
    dashboard.script["/organizations"] = [httpx.Response(200, json=dashboard.orgs[:1], headers={
        "Link": "<https://evil.example.net/api/v1/organizations?startingAfter=o1>; rel=next"})]
    with pytest.raises(TargetError, match=r"refused a redirect to https://evil\.example\.net"):
        await target.organizations(ENDPOINT, ADMIN)
    assert all("evil" not in r for r in dashboard.requests)


@pytest.fixture
def vault(tmp_path: Path) -> Any:
    v = Vault.init(Settings(home=tmp_path / "home"))
    yield v
    v.close()


async def test_plan_marks_managed_skips_admins_and_applies_in_one_go(
        vault: Vault, target: MerakiAuthUserTarget) -> None:
    key = vault.add(type="login", title="api-key", fields=[Field("password", None, [Secret(KEY)])],
                    custom=[Field("text", "base_url", [BASE])])
    net1 = vault.add(type="pamMerakiNetwork", title="hq", custom=[Field("text", "network_id", ["N_1"])])
    a = vault.add(type="pamUser", title="a", fields=[Field("login", None, ["A@x.com"])])
    set_profile(vault, a.uid, target="meraki-auth-user", resource=net1.uid, admin=key.uid)
    endpoint = meraki_endpoint(key)
    assert endpoint.base_url == BASE
    plan = plan_meraki(vault, await scan_meraki(target, endpoint, ADMIN, org="o1"), key, endpoint)
    actions = {r.account: r.action for r in plan.rows}
    assert actions == {"a@x.com": MANAGED, "admin@x.com": SKIP, "b@x.com": CREATE}
    assert [n.title for n in plan.networks] == ["meraki-N_2"]   # N_1 has its record already
    assert ("base_url", BASE) in plan.networks[0].custom

    created = apply_plan(vault, plan)
    rec = vault.get(created[0])
    assert rec.title == "b@x.com @ N_2" and vault.secret(rec.uid) is None   # first rotation sets it
    assert rec.meta["rotation"]["admin"] == key.uid
    assert vault.get(rec.meta["rotation"]["resource"]).custom_value("network_id") == "N_2"


async def test_apply_is_all_or_nothing(vault: Vault, target: MerakiAuthUserTarget) -> None:
    from dataclasses import replace

    key = vault.add(type="login", title="api-key", fields=[Field("password", None, [Secret(KEY)])])
    endpoint = meraki_endpoint(key, BASE)
    plan = plan_meraki(vault, await scan_meraki(target, endpoint, ADMIN, org="o1"), key, endpoint)
    plan.rows[-1] = replace(plan.rows[-1], target="no-such-target")   # the last profile fails validation
    before = {s.title for s in vault.summaries()}
    with pytest.raises(KeyturnError, match="no-such-target"):
        apply_plan(vault, plan)
    assert {s.title for s in vault.summaries()} == before
