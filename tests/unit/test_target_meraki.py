from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from keyturn.engine.ratelimit import OrgBudgets
from keyturn.errors import (
    AccountNotFound,
    AccountNotRotatable,
    AmbiguousAccount,
    ChangeRejected,
    RateLimited,
    TargetAuthRejected,
    TargetError,
    TargetTimeout,
    TargetUnreachable,
)
from keyturn.secret import Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint, Target, Verdict
from keyturn.targets.meraki import MerakiAuthUserTarget

KEY = "6bec40cf957de430a6f1f2baf056b99a4fac9ea0"
NET = "N_24329156"
BASE = "https://api.meraki.com/api/v1"
Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeMeraki:
    """In-memory Dashboard: one network of auth users; `script` answers the next requests first."""

    def __init__(self) -> None:
        self.users: list[dict[str, Any]] = [
            {"id": "amFuZS5yb2VAZXhhbXBsZS5jb20=", "email": "jane.roe@example.com", "name": "Jane",
             "accountType": "Client VPN", "isAdmin": False, "authorizations": []},
            {"id": "bmV0YWRtaW5AZXhhbXBsZS5jb20=", "email": "netadmin@example.com", "name": "Admin",
             "accountType": "Client VPN", "isAdmin": True, "authorizations": []},
        ]
        self.passwords: dict[str, str] = {}
        self.script: list[Handler] = []
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            return self.script.pop(0)(request)
        if request.headers.get("authorization") != f"Bearer {KEY}" and (
                request.headers.get("x-cisco-meraki-api-key") != KEY):
            return httpx.Response(401, json={"errors": ["Invalid API key"]})
        path = request.url.raw_path.decode()
        prefix = f"/api/v1/networks/{NET}/merakiAuthUsers"
        if path == f"/api/v1/networks/{NET}" and request.method == "GET":
            return httpx.Response(200, json={"id": NET, "organizationId": "2930418"})
        if path == prefix and request.method == "GET":
            return httpx.Response(200, json=self.users)
        if path.startswith(prefix + "/"):
            from urllib.parse import unquote
            user_id = unquote(path[len(prefix) + 1:])
            user = next((u for u in self.users if u["id"] == user_id), None)
            if user is None:
                return httpx.Response(404, json={"errors": ["Not found"]})
            if request.method == "GET":
                return httpx.Response(200, json=user)
            if request.method == "PUT":
                body = json.loads(request.content)
                self.passwords[user["email"]] = body["password"]
                return httpx.Response(200, json=user)
        return httpx.Response(404, json={"errors": ["Not found"]})


def once(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, json=body if body is not None else {"errors": ["x"]},
                                          headers=headers)


@pytest.fixture
def meraki() -> FakeMeraki:
    return FakeMeraki()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def target(meraki: FakeMeraki, fake_time: FakeTime) -> MerakiAuthUserTarget:
    def factory(endpoint: Endpoint) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(meraki.handler))

    budgets = OrgBudgets(clock=fake_time.clock, sleep=fake_time.sleep)
    return MerakiAuthUserTarget(factory, budget=budgets, sleep=fake_time.sleep, clock=fake_time.clock)


def account(email: str = "Jane.Roe@Example.com", org: str | None = "2930418", **options: str) -> Account:
    return Account(record_uid="rec-m", username=email,
                   endpoint=Endpoint(host="api.meraki.com", network_id=NET, org_id=org, options=options),
                   admin=AdminCredential("api", Secret(KEY)))


async def test_is_a_target_that_cannot_verify(target: MerakiAuthUserTarget) -> None:
    assert isinstance(target, Target)
    assert target.can_verify is False and target.verifiable(account()) is False
    assert await target.verify(account(), Secret("x")) is Verdict.INCONCLUSIVE


async def test_change_finds_by_email_case_insensitively_and_puts_only_password(
        meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    await target.change(account(), None, Secret("n3w-pass"))
    assert meraki.passwords == {"jane.roe@example.com": "n3w-pass"}
    put = meraki.requests[-1]
    assert put.method == "PUT"
    assert json.loads(put.content) == {"password": "n3w-pass"}  # never emailPasswordToUser
    assert put.url.raw_path.decode().endswith("/merakiAuthUsers/amFuZS5yb2VAZXhhbXBsZS5jb20%3D")
    assert put.headers["authorization"] == f"Bearer {KEY}"
    await target.aclose()


async def test_legacy_key_header(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    await target.change(account(auth_header="X-Cisco-Meraki-API-Key"), None, Secret("p"))
    assert meraki.requests[-1].headers["x-cisco-meraki-api-key"] == KEY
    assert "authorization" not in meraki.requests[-1].headers


async def test_list_is_cached_per_network(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    await asyncio.gather(*(target.change(account(), None, Secret(f"p{i}")) for i in range(5)))
    assert [r.method for r in meraki.requests].count("GET") == 1


async def test_org_resolved_from_network_once(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    await target.change(account(org=None), None, Secret("p1"))
    await target.change(account(org=None), None, Secret("p2"))
    lookups = [r for r in meraki.requests if r.url.path == f"/api/v1/networks/{NET}"]
    assert len(lookups) == 1
    assert "2930418" in target.budget.orgs()


async def test_unknown_email(target: MerakiAuthUserTarget) -> None:
    with pytest.raises(AccountNotFound, match="no Meraki auth user"):
        await target.change(account("nobody@example.com"), None, Secret("p"))


async def test_ambiguous_email_lists_ids(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    meraki.users.append({"id": "dup", "email": "JANE.ROE@example.com", "isAdmin": False})
    with pytest.raises(AmbiguousAccount, match="dup"):
        await target.change(account(), None, Secret("p"))
    assert meraki.passwords == {}


async def test_admin_user_refused_clearly(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    with pytest.raises(AccountNotRotatable, match="Dashboard administrator"):
        await target.change(account("netadmin@example.com"), None, Secret("p"))
    assert isinstance(AccountNotRotatable("x"), ChangeRejected)
    assert all(r.method == "GET" for r in meraki.requests)


async def test_bad_api_key(target: MerakiAuthUserTarget) -> None:
    acct = Account(record_uid="r", username="jane.roe@example.com",
                   endpoint=Endpoint(host="api.meraki.com", network_id=NET, org_id="1"),
                   admin=AdminCredential("api", Secret("0" * 40)))
    with pytest.raises(TargetAuthRejected) as err:
        await target.change(acct, None, Secret("p"))
    assert "0" * 40 not in str(err.value)


async def test_refused_password_is_change_rejected(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    await target._users(account())  # warm the list so the next request is the PUT
    meraki.script = [once(400, {"errors": ["Password 'weak-secret' is too weak"]})]
    with pytest.raises(ChangeRejected) as err:
        await target.change(account(), None, Secret("weak-secret"))
    assert "weak-secret" not in str(err.value)


async def test_429_waits_retry_after_and_penalizes_the_org(meraki: FakeMeraki, fake_time: FakeTime,
                                                           target: MerakiAuthUserTarget) -> None:
    limited = {"errors": ["API rate limit exceeded for organization"]}
    meraki.script = [once(429, limited, {"Retry-After": "2"})]
    await target.change(account(), None, Secret("p"))
    assert meraki.passwords == {"jane.roe@example.com": "p"}
    assert target.budget.pacer("2930418").penalties == 1
    assert fake_time.now >= 2.0  # waited for Retry-After before the retry


async def test_429_storm_ends_in_rate_limited(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    meraki.script = [once(429, headers={"Retry-After": "1"})] * 6
    with pytest.raises(RateLimited) as err:
        await target.change(account(), None, Secret("p"))
    assert err.value.retry_after == 1.0


async def test_5xx_retried_then_unreachable(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    meraki.script = [once(503)]
    await target.change(account(), None, Secret("p"))  # one 503 then fine
    assert meraki.passwords
    meraki.script = [once(500)] * 3
    with pytest.raises(TargetUnreachable, match="after 3 attempts"):
        await target.change(account(), None, Secret("p2"))


async def test_302_on_put_followed_as_put(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    await target._users(account())

    def redirect(request: httpx.Request) -> httpx.Response:
        location = str(request.url).replace("api.meraki.com", "n392.meraki.com")
        return httpx.Response(302, headers={"Location": location})

    meraki.script = [redirect]
    await target.change(account(), None, Secret("kept-put"))
    first, second = meraki.requests[-2:]
    assert first.url.host == "api.meraki.com" and second.url.host == "n392.meraki.com"
    assert second.method == "PUT" and json.loads(second.content) == {"password": "kept-put"}
    assert second.headers["authorization"] == f"Bearer {KEY}"
    assert meraki.passwords == {"jane.roe@example.com": "kept-put"}


@pytest.mark.parametrize("location", ["https://evil.example.com/api/v1/x", "http://n1.meraki.com/api/v1/x",
                                      "https://meraki.com.evil.io/api/v1/x"])
async def test_redirect_to_foreign_host_refused(meraki: FakeMeraki, target: MerakiAuthUserTarget,
                                                location: str) -> None:
    meraki.script = [once(307, headers={"Location": location})]
    with pytest.raises(TargetError, match="refused a redirect"):
        await target.change(account(), None, Secret("p"))
    assert all(r.url.host == "api.meraki.com" for r in meraki.requests)


async def test_redirect_to_configured_base_host_allowed(meraki: FakeMeraki) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/merakiAuthUsers") and len(seen) == 1:
            return httpx.Response(308, headers={"Location": str(request.url).replace("/api/v1", "/api/v1/")})
        return meraki.handler(httpx.Request(request.method, str(request.url).replace(
            "http://127.0.0.1:9999", "https://api.meraki.com").replace("v1//", "v1/"),
            headers=request.headers, content=request.content))

    tgt = MerakiAuthUserTarget(lambda ep: httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    acct = Account(record_uid="r", username="jane.roe@example.com",
                   endpoint=Endpoint(host="127.0.0.1", base_url="http://127.0.0.1:9999/api/v1",
                                     network_id=NET, org_id="1"),
                   admin=AdminCredential("api", Secret(KEY)))
    await tgt.change(acct, None, Secret("p"))
    assert meraki.passwords and seen[1].startswith("http://127.0.0.1:9999/")
    await tgt.aclose()


async def test_200_but_user_vanished(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    await target._users(account())

    def put_then_delete(request: httpx.Request) -> httpx.Response:
        meraki.users.pop(0)
        return httpx.Response(200, json={})

    meraki.script = [put_then_delete]
    with pytest.raises(AccountNotFound, match="is gone"):
        await target.change(account(), None, Secret("p"))


async def test_stale_cached_id_is_refreshed(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    await target._users(account())
    meraki.users[0]["id"] = "bmV3LWlk"  # the id changed behind our back: PUT 404, list again, PUT
    await target.change(account(), None, Secret("p"))
    assert meraki.passwords == {"jane.roe@example.com": "p"}


async def test_transport_errors(meraki: FakeMeraki, target: MerakiAuthUserTarget) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    meraki.script = [boom]
    with pytest.raises(TargetUnreachable):
        await target.change(account(), None, Secret("p"))
    meraki.script = [slow]
    with pytest.raises(TargetTimeout):
        await target.change(account(), None, Secret("p"))


async def test_verifier_configured(meraki: FakeMeraki) -> None:
    asked: list[dict[str, Any]] = []

    def verifier(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asked.append(body)
        return httpx.Response(200, json={"ok": body["password"] == "good"})

    tgt = MerakiAuthUserTarget(lambda ep: httpx.AsyncClient(transport=httpx.MockTransport(meraki.handler)),
                               verifier_client=httpx.AsyncClient(transport=httpx.MockTransport(verifier)))
    acct = account(verify_url="http://127.0.0.1:1/verify")
    assert tgt.verifiable(acct)
    assert await tgt.verify(acct, Secret("good")) is Verdict.OK
    assert await tgt.verify(acct, Secret("bad")) is Verdict.REJECTED
    assert asked[0] == {"kind": "meraki", "network": NET, "email": "Jane.Roe@Example.com", "password": "good"}
    await tgt.aclose()


async def test_verifier_unreachable_is_inconclusive() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    tgt = MerakiAuthUserTarget(verifier_client=httpx.AsyncClient(transport=httpx.MockTransport(down)))
    assert await tgt.verify(account(verify_url="http://127.0.0.1:1/v"), Secret("x")) is Verdict.INCONCLUSIVE
    await tgt.aclose()


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST.", True), ("128.0.0.1", False), ("127.0.0.1.nip.io", False), ("localhost.evil.com", False),
    ("::ffff:10.0.0.1", False), ("", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    from keyturn.targets.meraki import is_loopback

    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("header", "held"), [("inf", 2.0), ("1e308", 300.0), ("nan", 2.0), ("-5", 0.0),
                                              ("0.5", 0.5)])
async def test_retry_after_is_bounded(meraki: FakeMeraki, fake_time: FakeTime, target: MerakiAuthUserTarget,
                                      header: str, held: float) -> None:
    """A hostile or broken Retry-After cannot hold every rotation of the organisation for ever."""
    meraki.script = [once(429, headers={"Retry-After": header})]
    await target.change(account(), None, Secret("p"))
    bucket = target.budget.pacer("2930418")
    assert bucket.penalties == 1
    assert max(fake_time.slept, default=0.0) <= held + 1.0
