from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from keyturn.errors import (
    AccountNotFound,
    ChangeRejected,
    ProfileError,
    TargetAuthRejected,
    TargetError,
    TargetTimeout,
    TargetUnreachable,
)
from keyturn.secret import Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint, Persisting, Target, Verdict
from keyturn.targets.iosxe_restconf import IosXeRestconfTarget

USER_URL = "/restconf/data/Cisco-IOS-XE-native:native/username=bob"
NATIVE_URL = "/restconf/data/Cisco-IOS-XE-native:native"
REFUSED = {"ietf-restconf:errors": {"error": [{"error-type": "application", "error-tag": "invalid-value",
                                                "error-message": "inconsistent value: Device refused one "
                                                                 "or more commands"}]}}
LOCKED = {"errors": {"error": [{"error-message": "the configuration database is locked", "error-tag":
                                "lock-denied"}]}}


class FakeDevice:
    """A tiny in-memory RESTCONF device: users with a secret or password, Basic auth, scripted faults."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {
            "admin": {"kind": "secret", "clear": "adminpw", "priv": 15},
            "bob": {"kind": "secret", "clear": "old-pw", "priv": 15},
        }
        self.script: list[Callable[[httpx.Request], httpx.Response] | int] = []
        self.requests: list[httpx.Request] = []
        self.saved = 0
        self.fields: int | None = None   # status for `native?fields=...` (None: no such path, 404)

    def _auth(self, request: httpx.Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        name, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        user = self.users.get(name)
        return name if user and user["clear"] == pw and user["priv"] == 15 else None

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, int):
                body = LOCKED if step == 409 else {"errors": {"error": [{"error-tag": "operation-failed"}]}}
                return httpx.Response(step, json=body)
            return step(request)
        if self._auth(request) is None:
            denied = {"ietf-restconf:errors": {"error": [{"error-tag": "access-denied"}]}}
            return httpx.Response(401, json=denied)
        path = request.url.path
        if path == "/restconf/operations/cisco-ia:save-config" and request.method == "POST":
            self.saved += 1
            return httpx.Response(200, json={"cisco-ia:output": {"result": "Save running-config successful"}})
        if path == NATIVE_URL and self.fields is not None:
            if self.fields != 200:
                return httpx.Response(self.fields, json={"ietf-restconf:errors": {"error": [
                    {"error-tag": "invalid-value", "error-message": "invalid query parameter"}]}})
            return httpx.Response(200, json={"Cisco-IOS-XE-native:native": {"aaa": {
                "new-model": [None], "Cisco-IOS-XE-aaa:authentication": {"login": [
                    {"name": "default", "a1": {"local": [None]}}]}}}})
        name = path.rsplit("=", 1)[-1]
        user = self.users.get(name)
        if user is None:
            return httpx.Response(404, json={"ietf-restconf:errors": {"error": [
                {"error-tag": "invalid-value", "error-message": "uri keypath not found"}]}})
        if request.method == "GET":
            entry = {"name": name, "privilege": user["priv"], user["kind"]: {"encryption": "9",
                                                                             user["kind"]: "$9$x$y"}}
            return httpx.Response(200, json={"Cisco-IOS-XE-native:username": [entry]})
        if request.method == "PATCH":
            [entry] = json.loads(request.content)["Cisco-IOS-XE-native:username"]
            kind = "secret" if "secret" in entry else "password"
            user["clear"] = entry[kind][kind]
            user["kind"] = kind
            return httpx.Response(204)
        return httpx.Response(405)


@pytest.fixture
def device() -> FakeDevice:
    return FakeDevice()


@pytest.fixture
def target(device: FakeDevice) -> IosXeRestconfTarget:
    async def no_sleep(_: float) -> None:
        return None

    def factory(endpoint: Endpoint) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"https://{endpoint.host}",
                                 transport=httpx.MockTransport(device.handler))

    return IosXeRestconfTarget(factory, sleep=no_sleep, retries=3)


def account(admin: bool = False, **options: str) -> Account:
    return Account(record_uid="rec1", username="bob", endpoint=Endpoint(host="sw1", port=443),
                   admin=AdminCredential("admin", Secret("adminpw")) if admin else None, options=options)


def basic_user(request: httpx.Request) -> str:
    return base64.b64decode(request.headers["authorization"][6:]).decode().partition(":")[0]


async def test_is_a_target(target: IosXeRestconfTarget) -> None:
    assert isinstance(target, Target) and isinstance(target, Persisting)


async def test_self_change_then_persist_then_verify(device: FakeDevice, target: IosXeRestconfTarget) -> None:
    await target.change(account(), Secret("old-pw"), Secret("new-pw"))
    assert device.users["bob"]["clear"] == "new-pw"
    get, patch = device.requests
    assert get.method == "GET" and patch.method == "PATCH" and patch.url.path == USER_URL
    assert json.loads(patch.content) == {"Cisco-IOS-XE-native:username": [
        {"name": "bob", "secret": {"encryption": "0", "secret": "new-pw"}}]}
    assert patch.headers["content-type"] == "application/yang-data+json"
    assert basic_user(patch) == "bob"
    await target.persist(account())  # the old secret is dead now; persist uses the live one
    assert device.saved == 1 and basic_user(device.requests[-1]) == "bob"
    assert await target.verify(account(), Secret("new-pw")) is Verdict.OK
    assert await target.verify(account(), Secret("old-pw")) is Verdict.REJECTED
    await target.aclose()


async def test_admin_path_and_password_mode(device: FakeDevice, target: IosXeRestconfTarget) -> None:
    device.users["bob"]["kind"] = "password"
    await target.change(account(admin=True, mode="password"), None, Secret("n3w"))
    patch = device.requests[-1]
    assert basic_user(patch) == "admin"
    assert json.loads(patch.content)["Cisco-IOS-XE-native:username"][0]["password"] == {
        "encryption": "0", "password": "n3w"}


async def test_secret_over_password_is_refused_before_writing(device: FakeDevice,
                                                             target: IosXeRestconfTarget) -> None:
    device.users["bob"]["kind"] = "password"
    with pytest.raises(ChangeRejected, match="mode=password"):
        await target.change(account(mode="secret"), Secret("old-pw"), Secret("new"))
    assert [r.method for r in device.requests] == ["GET"]


async def test_auto_mode_keeps_the_kind_the_user_holds(device: FakeDevice,
                                                       target: IosXeRestconfTarget) -> None:
    device.users["bob"]["kind"] = "password"
    await target.change(account(), Secret("old-pw"), Secret("new"))
    assert device.users["bob"] == {"kind": "password", "clear": "new", "priv": 15}


async def test_bad_mode_option(target: IosXeRestconfTarget) -> None:
    with pytest.raises(ProfileError):
        await target.change(account(mode="type7"), Secret("old-pw"), Secret("new"))


async def test_missing_user_is_never_created(device: FakeDevice, target: IosXeRestconfTarget) -> None:
    acct = Account(record_uid="r", username="ghost", endpoint=Endpoint(host="sw1"),
                   admin=AdminCredential("admin", Secret("adminpw")))
    with pytest.raises(AccountNotFound):
        await target.change(acct, None, Secret("new"))
    assert [r.method for r in device.requests] == ["GET"]
    assert "ghost" not in device.users


async def test_wrong_current_secret_is_auth_rejected(device: FakeDevice, target: IosXeRestconfTarget) -> None:
    with pytest.raises(TargetAuthRejected):
        await target.change(account(), Secret("wrong"), Secret("new"))
    assert device.users["bob"]["clear"] == "old-pw"


@pytest.mark.parametrize("shape", ["ietf", "legacy"])
async def test_device_refused_is_change_rejected(device: FakeDevice, target: IosXeRestconfTarget,
                                                 shape: str) -> None:
    body = REFUSED if shape == "ietf" else {"errors": REFUSED["ietf-restconf:errors"]}

    device.script = [lambda r: _get_ok(), lambda r: httpx.Response(400, json=body)]
    with pytest.raises(ChangeRejected, match="Device refused one or more commands") as err:
        await target.change(account(), Secret("old-pw"), Secret("new-secret-value"))
    assert "new-secret-value" not in str(err.value)


def _get_ok() -> httpx.Response:
    return httpx.Response(200, json={"Cisco-IOS-XE-native:username": [
        {"name": "bob", "privilege": 15, "secret": {"encryption": "9", "secret": "$9$x$y"}}]})


async def test_device_message_never_echoes_secret(device: FakeDevice, target: IosXeRestconfTarget) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"errors": {"error": [{"error-tag": "invalid-value",
                                                               "error-message": "bad value s3cr3t-new"}]}})

    device.script = [lambda r: _get_ok(), echo]
    with pytest.raises(ChangeRejected) as err:
        await target.change(account(), Secret("old-pw"), Secret("s3cr3t-new"))
    assert "s3cr3t-new" not in str(err.value) and "**********" in str(err.value)


async def test_lock_denied_is_retried(device: FakeDevice, target: IosXeRestconfTarget) -> None:
    device.script = [409, 409]  # the GET hits a locked datastore twice, then succeeds
    await target.change(account(), Secret("old-pw"), Secret("new"))
    assert device.users["bob"]["clear"] == "new"
    assert len(device.requests) == 4


@pytest.mark.parametrize("status", [503, 500])
async def test_persistent_transient_errors_become_unreachable(device: FakeDevice, target: IosXeRestconfTarget,
                                                              status: int) -> None:
    device.script = [status] * 3
    with pytest.raises(TargetUnreachable, match="after 3 attempts"):
        await target.change(account(), Secret("old-pw"), Secret("new"))
    assert len(device.requests) == 3


async def test_a_held_lock_is_waited_out_longer_than_a_server_error(device: FakeDevice,
                                                                   target: IosXeRestconfTarget) -> None:
    device.script = [409] * 9          # a save-config / re-sync window: 9 refusals, then the GET works
    await target.change(account(), Secret("old-pw"), Secret("new"))
    assert device.users["bob"]["clear"] == "new"


async def test_a_lock_never_released_becomes_unreachable_with_the_device_words(
        device: FakeDevice, target: IosXeRestconfTarget) -> None:
    device.script = [409] * 20
    with pytest.raises(TargetUnreachable, match=r"after 10 attempts.*lock-denied"):
        await target.change(account(), Secret("old-pw"), Secret("new"))
    assert len(device.requests) == 10


async def test_connect_error_and_timeout() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler, error in ((refuse, TargetUnreachable), (slow, TargetTimeout)):
        tgt = IosXeRestconfTarget(lambda ep, h=handler: httpx.AsyncClient(  # type: ignore[misc]
            base_url="https://sw1", transport=httpx.MockTransport(h)))
        with pytest.raises(error) as err:
            await tgt.change(account(), Secret("old-pw"), Secret("new"))
        assert err.value.__cause__ is not None
        assert await tgt.verify(account(), Secret("x")) is Verdict.INCONCLUSIVE
        await tgt.aclose()


async def test_verify_inconclusive_on_5xx(device: FakeDevice, target: IosXeRestconfTarget) -> None:
    device.script = [503, 503, 503]
    assert await target.verify(account(), Secret("old-pw")) is Verdict.INCONCLUSIVE


async def test_verify_has_no_side_effects(device: FakeDevice, target: IosXeRestconfTarget) -> None:
    assert await target.verify(account(), Secret("old-pw")) is Verdict.OK
    assert [r.method for r in device.requests] == ["GET"]


async def test_persist_without_any_credential(target: IosXeRestconfTarget) -> None:
    with pytest.raises(TargetAuthRejected, match="no credential"):
        await target.persist(account())


async def test_persist_admin_or_explicit_secret(device: FakeDevice, target: IosXeRestconfTarget) -> None:
    await target.persist(account(admin=True))
    await target.persist(account(), secret=Secret("old-pw"))
    assert device.saved == 2


async def test_client_reused_per_device(device: FakeDevice) -> None:
    made: list[str] = []

    def factory(endpoint: Endpoint) -> httpx.AsyncClient:
        made.append(endpoint.host)
        return httpx.AsyncClient(base_url="https://x", transport=httpx.MockTransport(device.handler))

    tgt = IosXeRestconfTarget(factory)
    for _ in range(3):
        await tgt.verify(account(), Secret("old-pw"))
    other = Account(record_uid="r2", username="bob", endpoint=Endpoint(host="sw2"))
    await tgt.verify(other, Secret("old-pw"))
    assert made == ["sw1", "sw2"]
    await tgt.aclose()


async def test_persist_after_verify_fresh(device: FakeDevice, target: IosXeRestconfTarget) -> None:
    # Recovery: a new process verifies the candidate, then saves with no admin credential.
    device.users["bob"]["clear"] = "candidate"
    assert await target.verify(account(), Secret("candidate")) is Verdict.OK
    await target.persist(account())
    assert device.saved == 1 and basic_user(device.requests[-1]) == "bob"


async def test_a_device_answering_absurdly_nested_json_gets_a_clear_error_not_a_crash() -> None:
    """A rogue or broken peer: every answer is 200 with JSON nested past the parser's recursion limit."""
    deep = b"[" * 100_000 + b"]" * 100_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=deep, headers={"Content-Type": "application/yang-data+json"})

    tgt = IosXeRestconfTarget(lambda ep: httpx.AsyncClient(base_url="https://sw1",
                                                           transport=httpx.MockTransport(handler)))
    try:
        check = await tgt.check(account(admin=True), Secret("x"))
        assert check.verdict is Verdict.INCONCLUSIVE and "not JSON" in check.detail
        hashed = await tgt.check(account(admin=True, verify="hash"), Secret("x"))
        assert hashed.verdict is Verdict.INCONCLUSIVE and "not JSON" in hashed.detail
        with pytest.raises(TargetError, match="not JSON") as err:
            await tgt.change(account(admin=True), None, Secret("new"))
        assert not isinstance(err.value, AccountNotFound)
    finally:
        await tgt.aclose()


def _trace(device: FakeDevice) -> list[str]:
    """`METHOD path[?query] as-user` for each request the device saw."""
    return [f"{r.method} {r.url.raw_path.decode()} {basic_user(r)}" for r in device.requests]


async def test_a_rotation_reads_the_aaa_once_and_the_user_once_per_proof(device: FakeDevice,
                                                                         target: IosXeRestconfTarget) -> None:
    # verify-current, change, persist, verify-new on one account (one ledger), as the engine runs them
    device.fields = 200
    acct = account(admin=True)
    assert (await target.check(acct, Secret("old-pw"))).verdict is Verdict.OK
    await target.change(acct, Secret("old-pw"), Secret("new-pw"))
    await target.persist(acct)
    assert (await target.check(acct, Secret("new-pw"))).verdict is Verdict.OK
    user = USER_URL
    assert _trace(device) == [
        f"GET {NATIVE_URL}?fields=aaa;login admin", f"GET {user} admin", f"GET {user} bob",  # verify current
        f"PATCH {user} admin",                        # change: the entry verify-current read says "secret"
        "POST /restconf/operations/cisco-ia:save-config admin",
        f"GET {user} admin", f"GET {user} bob",       # verify new: stored hash first, then the login
    ]


async def test_a_device_refusing_fields_is_read_the_old_way_and_remembered(
        device: FakeDevice, target: IosXeRestconfTarget) -> None:
    device.fields = 400
    assert (await target.check(account(admin=True), Secret("old-pw"))).verdict is Verdict.OK
    assert (await target.check(account(admin=True), Secret("old-pw"))).verdict is Verdict.OK
    aaa = [t for t in _trace(device) if "aaa" in t or "login " in t]
    separately = [f"GET {NATIVE_URL}/aaa admin", f"GET {NATIVE_URL}/login admin"]
    assert aaa == [f"GET {NATIVE_URL}?fields=aaa;login admin", *separately, *separately]


async def test_fields_read_refused_credential_is_auth_rejected(device: FakeDevice,
                                                              target: IosXeRestconfTarget) -> None:
    device.fields = 200
    device.users["admin"]["clear"] = "rotated-elsewhere"
    check = await target.check(account(admin=True), Secret("old-pw"))
    assert check.verdict is Verdict.INCONCLUSIVE and "admin credential was refused" in check.detail
    assert len(device.requests) == 1   # no fallback read: the query was not what failed


async def test_a_self_service_change_takes_the_entry_its_login_returned(device: FakeDevice,
                                                                        target: IosXeRestconfTarget) -> None:
    acct = account()
    assert await target.verify(acct, Secret("old-pw")) is Verdict.OK
    await target.change(acct, Secret("old-pw"), Secret("new-pw"))
    assert _trace(device) == [f"GET {USER_URL} bob", f"PATCH {USER_URL} bob"]
    await target.change(acct, Secret("new-pw"), Secret("newer-pw"))   # taken once: read again
    assert _trace(device)[2:] == [f"GET {USER_URL} bob", f"PATCH {USER_URL} bob"]
    assert device.users["bob"]["clear"] == "newer-pw"


async def test_a_user_gone_since_the_read_is_still_never_created(device: FakeDevice,
                                                                 target: IosXeRestconfTarget) -> None:
    acct = account(admin=True)
    assert (await target.check(acct, Secret("old-pw"))).verdict is Verdict.OK
    del device.users["bob"]
    with pytest.raises(AccountNotFound):
        await target.change(acct, Secret("old-pw"), Secret("new-pw"))
    assert "bob" not in device.users


async def test_an_entry_read_for_another_user_is_not_taken(device: FakeDevice,
                                                           target: IosXeRestconfTarget) -> None:
    acct = account(admin=True)
    assert (await target.check(acct, Secret("old-pw"))).verdict is Verdict.OK
    ghost = replace(acct, username="ghost")   # `replace` shares the ledger
    with pytest.raises(AccountNotFound):
        await target.change(ghost, None, Secret("new-pw"))
    assert _trace(device)[-1] == f"GET {NATIVE_URL}/username=ghost admin"
