"""meraki-ssid-psk and meraki-ipsk error mapping with `httpx.MockTransport` (no network): every bad
answer becomes one clear keyturn error, without the secret in it, and nothing is sent when nothing may be."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from keyturn.errors import (
    AccountNotFound,
    AccountNotRotatable,
    ChangeRejected,
    ProfileError,
    TargetAuthRejected,
    TargetError,
)
from keyturn.secret import Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint, Proof, Verdict
from keyturn.targets.meraki_ipsk import MerakiIpskTarget, family_version, grace_of
from keyturn.targets.meraki_ssid import MerakiSsidPskTarget

NET = "N_1"
BASE = "https://api.meraki.com/api/v1"
NEW = Secret("new-psk-value-1")
OLD = Secret("old-psk-value-0")
Handler = Callable[[httpx.Request], httpx.Response]


def account(name: str = "Staff", **options: str) -> Account:
    return Account(record_uid="rec", username=name, endpoint=Endpoint(host="api.meraki.com", network_id=NET,
                                                                      org_id="1"),
                   admin=AdminCredential("api", Secret("k" * 40)), options={"ssid": "3", **options})


def client(handler: Handler, seen: list[httpx.Request]) -> Callable[[Endpoint], httpx.AsyncClient]:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return lambda ep: httpx.AsyncClient(transport=httpx.MockTransport(record), base_url=BASE)


def ssid_api(ssid: dict[str, Any], put: Callable[[dict[str, Any]], httpx.Response] | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=ssid)
        assert put is not None
        return put(json.loads(request.content))
    return handle


async def ssid_target(handler: Handler, seen: list[httpx.Request]) -> MerakiSsidPskTarget:
    return MerakiSsidPskTarget(client(handler, seen), max_5xx=1, backoff=0.0)


@pytest.mark.parametrize(("status", "body", "error", "words"), [
    (400, {"errors": ["A PSK SSID needs an 8 to 63 character key"]}, ChangeRejected, "8 to 63"),
    (401, {"errors": ["Invalid API key"]}, TargetAuthRejected, "API key was refused"),
    (403, {"errors": ["Read-only"]}, TargetAuthRejected, "may not do this"),
    (404, {"errors": ["Not found"]}, AccountNotFound, "wrong network id"),
    (409, {"errors": ["echo new-psk-value-1"]}, TargetError, "unexpected answer"),
])
async def test_ssid_put_errors_are_mapped_without_the_psk(status: int, body: Any, error: type,
                                                          words: str) -> None:
    seen: list[httpx.Request] = []
    target = await ssid_target(ssid_api({"number": 3, "authMode": "psk", "psk": OLD.reveal()},
                                        lambda _: httpx.Response(status, json=body)), seen)
    with pytest.raises(error, match=words) as exc:
        await target.change(account(), OLD, NEW)
    assert NEW.reveal() not in str(exc.value)
    assert [r.method for r in seen] == ["GET", "PUT"]
    assert json.loads(seen[1].content) == {"psk": NEW.reveal()}   # the PSK only, never a round trip
    await target.aclose()


@pytest.mark.parametrize("mode", ["open", "8021x-radius", "ipsk-without-radius"])
async def test_ssid_not_in_psk_mode_sends_nothing(mode: str) -> None:
    seen: list[httpx.Request] = []
    target = await ssid_target(ssid_api({"number": 3, "name": "Corp", "authMode": mode}), seen)
    with pytest.raises(AccountNotRotatable, match=f"SSID 3 \\('Corp'\\) uses authMode '{mode}'"):
        await target.change(account(), OLD, NEW)
    assert [r.method for r in seen] == ["GET"]
    check = await target.check(account(), OLD)
    assert check.verdict is Verdict.REJECTED and mode in check.detail
    await target.aclose()


async def test_ssid_check_reads_back_and_never_guesses() -> None:
    seen: list[httpx.Request] = []
    target = await ssid_target(ssid_api({"number": 3, "authMode": "psk", "psk": NEW.reveal()}), seen)
    assert (await target.check(account(), NEW)).proof is Proof.READ_BACK
    assert await target.verify(account(), NEW) is Verdict.OK
    assert await target.verify(account(), OLD) is Verdict.REJECTED
    hidden = await ssid_target(ssid_api({"number": 3, "authMode": "psk"}), seen)  # no psk for this key
    assert (await hidden.check(account(), NEW)).verdict is Verdict.INCONCLUSIVE
    down = await ssid_target(lambda r: httpx.Response(503, json={"errors": ["down"]}), seen)
    assert await down.verify(account(), NEW) is Verdict.INCONCLUSIVE
    # Idempotent: the SSID already has the new PSK, nothing is written.
    seen.clear()
    await target.change(account(), OLD, NEW)
    assert [r.method for r in seen] == ["GET"]
    for t in (target, hidden, down):
        await t.aclose()


async def test_options_are_checked() -> None:
    with pytest.raises(ProfileError, match="ssid=N"):
        MerakiSsidPskTarget.validate_options({})
    with pytest.raises(ProfileError, match="no profile option mode"):
        MerakiSsidPskTarget.validate_options({"ssid": "1", "mode": "secret"})
    with pytest.raises(ProfileError, match="grace"):
        MerakiIpskTarget.validate_options({"ssid": "1", "grace": "forever"})
    assert grace_of({"grace": "90m"}).total_seconds() == 5400
    assert [family_version("kiosk", n) for n in ("kiosk", "kiosk-v7", "kiosk-v0", "kiosk2", None)] == [
        1, 7, None, None, None]


def ipsk_api(items: list[dict[str, Any]], post: Callable[[dict[str, Any]], httpx.Response]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/identityPsks"):
            return httpx.Response(200, json=items)
        if request.method == "GET":
            return httpx.Response(200, json={"number": 3, "authMode": "ipsk-without-radius"})
        return post(json.loads(request.content))
    return handle


async def test_ipsk_creates_beside_the_old_one_with_its_group_policy() -> None:
    seen: list[httpx.Request] = []
    items = [{"id": "1", "name": "kiosk", "groupPolicyId": "101", "passphrase": OLD.reveal()},
             {"id": "2", "name": "other", "groupPolicyId": "999", "passphrase": "x" * 12}]
    target = MerakiIpskTarget(client(ipsk_api(items, lambda b: httpx.Response(201, json={**b, "id": "3"})),
                                     seen), backoff=0.0)
    await target.change(account("kiosk"), OLD, NEW)
    assert json.loads(seen[-1].content) == {"name": "kiosk-v2", "groupPolicyId": "101",
                                            "passphrase": NEW.reveal()}
    await target.aclose()


async def test_ipsk_refusals_are_mapped() -> None:
    seen: list[httpx.Request] = []
    items = [{"id": "1", "name": "kiosk", "groupPolicyId": "101", "passphrase": OLD.reveal()}]
    taken = MerakiIpskTarget(client(ipsk_api(items, lambda b: httpx.Response(
        400, json={"errors": ["Passphrase has already been taken"]})), seen), backoff=0.0)
    with pytest.raises(ChangeRejected, match="Passphrase has already been taken"):
        await taken.change(account("kiosk"), OLD, NEW)
    # Another writer took the name between list and POST: listed again and retried once, then refused.
    name_race = MerakiIpskTarget(client(ipsk_api(items, lambda b: httpx.Response(
        400, json={"errors": ["Name has already been taken"]})), seen), backoff=0.0)
    seen.clear()
    with pytest.raises(ChangeRejected, match="Name has already been taken"):
        await name_race.change(account("kiosk"), OLD, NEW)
    assert [r.method for r in seen].count("POST") == 2
    # No family and no group policy: refused before any POST.
    seen.clear()
    with pytest.raises(AccountNotFound, match="group_policy"):
        await taken.change(account("printer"), None, NEW)
    assert "POST" not in [r.method for r in seen]
    # delete_replaced never deletes without the current secret on the SSID.
    with pytest.raises(AccountNotFound, match="nothing deleted"):
        await taken.delete_replaced(account("kiosk"), [NEW])
    assert "DELETE" not in [r.method for r in seen]
    await taken.aclose()
    await name_race.aclose()
