"""Issue 12, item 5: the Meraki API key and passwords never travel in clear text.

The attacks: an on-path host (or a compromised shard) answers ``302 Location: http://api.meraki.com/…``
— the same host, plain http — and the target used to follow it, re-sending the Bearer key and the new
password in clear; ``http://api.meraki.com`` as a base URL (a typo) or a plain-http verifier on the
network had the same effect. Each is refused before a byte is sent; plain http to a loopback host (the
simulator lab) keeps working.
"""

from __future__ import annotations

import json

import httpx
import pytest

from keyturn.errors import ProfileError, TargetError
from keyturn.secret import Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint, Verdict
from keyturn.targets.meraki import MerakiAuthUserTarget

KEY = "test-api-key-for-the-mock-dashboard"
NET, ORG = "N_1", "O_1"
EMAIL = "jane.roe@example.com"
USER = {"id": "amFuZQ==", "email": EMAIL, "isAdmin": False}


class Dashboard:
    """Answers like the Dashboard API; `downgrade` makes the PUT answer a redirect to plain http."""

    def __init__(self, *, downgrade: str | None = None) -> None:
        self.downgrade = downgrade
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "GET":
            return httpx.Response(200, json=[USER])
        if self.downgrade and request.url.scheme == "https":
            return httpx.Response(302, headers={"Location": self.downgrade})
        return httpx.Response(200, json={**USER, "password": json.loads(request.content)["password"]})


def target(dashboard: Dashboard, verifier: Dashboard | None = None) -> MerakiAuthUserTarget:
    return MerakiAuthUserTarget(
        lambda ep: httpx.AsyncClient(transport=httpx.MockTransport(dashboard)),
        verifier_client=httpx.AsyncClient(transport=httpx.MockTransport(verifier or Dashboard())))


def account(base_url: str | None = None, **options: str) -> Account:
    return Account(record_uid="rec", username=EMAIL,
                   endpoint=Endpoint(host="api.meraki.com", base_url=base_url, network_id=NET, org_id=ORG,
                                     options=options),
                   admin=AdminCredential("api", Secret(KEY)))


def clear_text(requests: list[httpx.Request]) -> list[httpx.Request]:
    return [r for r in requests if r.url.scheme != "https"]


@pytest.mark.parametrize("location", [
    "http://api.meraki.com/api/v1/networks/N_1/merakiAuthUsers/amFuZQ%3D%3D",   # same host, downgraded
    "http://n392.meraki.com/api/v1/networks/N_1/merakiAuthUsers/amFuZQ%3D%3D",  # a shard, downgraded
    "http://127.0.0.1/api/v1/x",                                                # loopback is no excuse here
])
async def test_downgrade_redirect_is_refused_and_nothing_goes_out_in_clear(location: str) -> None:
    dashboard = Dashboard(downgrade=location)
    tgt = target(dashboard)
    with pytest.raises(TargetError, match=r"refused a redirect.*downgrade"):
        await tgt.change(account(), Secret("old"), Secret("N3w-secret!"))
    await tgt.aclose()
    assert clear_text(dashboard.requests) == []


@pytest.mark.parametrize("base", ["http://api.meraki.com/api/v1", "http://10.1.2.3:8080/api/v1",
                                  "http://127.0.0.1.nip.io/api/v1", "ftp://api.meraki.com/api/v1",
                                  "api.meraki.com"])
async def test_plain_http_base_url_off_loopback_is_refused_before_any_request(base: str) -> None:
    dashboard = Dashboard()
    tgt = target(dashboard)
    with pytest.raises(ProfileError, match="base_url"):
        await tgt.change(account(base), Secret("old"), Secret("N3w-secret!"))
    await tgt.aclose()
    assert dashboard.requests == []


async def test_plain_http_verifier_off_loopback_gets_no_password() -> None:
    dashboard, verifier = Dashboard(), Dashboard()
    tgt = target(dashboard, verifier)
    acct = account(verify_url="http://radius-check.corp.example/verify")
    with pytest.raises(ProfileError, match="verify_url"):
        await tgt.change(acct, Secret("old"), Secret("N3w-secret!"))  # refused before the change
    assert await tgt.verify(acct, Secret("N3w-secret!")) is Verdict.INCONCLUSIVE
    await tgt.aclose()
    assert dashboard.requests == [] and verifier.requests == []


@pytest.mark.parametrize("base", ["http://127.0.0.1:8080/api/v1", "http://127.9.9.9/api/v1",
                                  "http://[::1]:8080/api/v1", "http://localhost:8080/api/v1",
                                  "https://api.meraki.com/api/v1"])
async def test_loopback_http_and_https_keep_working(base: str) -> None:
    dashboard = Dashboard()
    tgt = target(dashboard)
    await tgt.change(account(base, verify_url=base.replace("/api/v1", "/verify")), Secret("old"),
                     Secret("N3w-secret!"))
    await tgt.aclose()
    assert [r.method for r in dashboard.requests] == ["GET", "PUT"]
