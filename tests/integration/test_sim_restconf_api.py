"""RESTCONF simulator over real HTTPS sockets: reads, writes, persistence, auth, IOS rules, errors.

Every JSON document the simulator answers is validated against the real IOS XE 17.18.1 YANG by a
response hook; every document it accepts is validated before sending, and every document it rejects
for typing reasons must be rejected by the real model too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_aaa import AaaConfig
from keyturn.sim.iosxe_device import IosXeDevice, verify_hash
from keyturn.sim.iosxe_restconf import RestconfFrontend
from keyturn.sim.restconf_errors import ErrorsShape
from keyturn.sim.tls import SimCA
from tests.yang_validate import YangValidator, load_validator

NATIVE = "/restconf/data/Cisco-IOS-XE-native:native"
USERS = f"{NATIVE}/username"
SAVE = "/restconf/operations/cisco-ia:save-config"
JSON_HEADERS = {"Accept": "application/yang-data+json", "Content-Type": "application/yang-data+json"}
ADMIN = ("admin", "Adm1n-Pass!")
TYPE9_VECTOR = "$9$cvWdfQlRRDKq/U$VFTPha5VHTCbSgSUAo.nPoh50ZiXOw1zmljEjXkaq1g"  # "123456"


@pytest.fixture(scope="session")
def yang() -> YangValidator:
    return load_validator()


@pytest.fixture(scope="session")
def ca() -> SimCA:
    return SimCA.create()


def make_device() -> IosXeDevice:
    device = IosXeDevice("r1", hostname="R1")
    device.set_user("admin", kind="secret", clear=ADMIN[1], privilege=15)
    device.set_user("netops", kind="password", clear="Old-Pass#1", privilege=15)
    device.set_user("viewer", kind="secret", stored=TYPE9_VECTOR, encryption="9", privilege=1)
    device.set_enable_secret("En4ble-Secret")
    device.save()
    return device


@dataclass
class Rig:
    device: IosXeDevice
    faults: Faults
    frontend: RestconfFrontend
    client: httpx.AsyncClient
    yang: YangValidator
    base_url: str
    ca: SimCA

    async def send(
        self, method: str, path: str, doc: dict[str, Any] | None = None, **kw: Any
    ) -> httpx.Response:
        """Send a document the real model accepts (checked first)."""
        if doc is not None:
            self.yang.validate(doc)
        return await self.client.request(method, path, content=_dumps(doc), **kw)

    async def send_invalid(self, method: str, path: str, doc: dict[str, Any]) -> httpx.Response:
        """Send a document the real model rejects too."""
        self.yang.assert_invalid(doc)
        return await self.client.request(method, path, content=_dumps(doc))

    def other_client(self, auth: tuple[str, str] | None, timeout: float = 10.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, verify=self.ca.client_context(), auth=auth,
                                 headers=JSON_HEADERS, timeout=timeout,
                                 event_hooks={"response": [self.client.event_hooks["response"][0]]})


def _dumps(doc: dict[str, Any] | None) -> bytes | None:
    return None if doc is None else json.dumps(doc).encode()


def validating_hook(yang: YangValidator) -> Callable[[httpx.Response], Coroutine[Any, Any, None]]:
    async def hook(response: httpx.Response) -> None:
        await response.aread()
        is_json = response.headers.get("content-type") == "application/yang-data+json"
        if is_json and response.request.method != "HEAD":
            assert response.content.endswith(b"\n")
            yang.validate(response.json())

    return hook


async def start_rig(yang: YangValidator, ca: SimCA, **options: Any) -> Rig:
    device, faults = make_device(), Faults(seed=7)
    frontend = RestconfFrontend(device, faults, **options)
    port = await frontend.start(ssl=ca.server_context("127.0.0.1"))
    base = f"https://127.0.0.1:{port}"
    client = httpx.AsyncClient(base_url=base, verify=ca.client_context(), auth=ADMIN, headers=JSON_HEADERS,
                               timeout=10.0, event_hooks={"response": [validating_hook(yang)]})
    return Rig(device, faults, frontend, client, yang, base, ca)


@pytest.fixture
async def rig(yang: YangValidator, ca: SimCA) -> AsyncIterator[Rig]:
    r = await start_rig(yang, ca)
    yield r
    await r.client.aclose()
    await r.frontend.stop()


def error_of(resp: httpx.Response, shape: ErrorsShape = "ietf") -> dict[str, Any]:
    body = resp.json()
    key = "ietf-restconf:errors" if shape == "ietf" else "errors"
    assert list(body) == [key]
    (entry,) = body[key]["error"]
    return dict(entry)


def user_doc(**entry: Any) -> dict[str, Any]:
    return {"Cisco-IOS-XE-native:native": {"username": [entry]}}


def entry_doc(**entry: Any) -> dict[str, Any]:
    return {"Cisco-IOS-XE-native:username": [entry]}


# ---- reads ---------------------------------------------------------------------------------------

async def test_discovery_documents(rig: Rig) -> None:
    meta = await rig.client.get("/.well-known/host-meta")
    assert meta.status_code == 200
    assert "<Link rel='restconf' href='/restconf'/>" in meta.text
    root = await rig.client.get("/restconf")
    assert root.json() == {
        "ietf-restconf:restconf": {"data": {}, "operations": {}, "yang-library-version": "2016-06-21"}
    }
    caps = await rig.client.get("/restconf/data/ietf-restconf-monitoring:restconf-state/capabilities")
    assert "urn:ietf:params:restconf:capability:depth:1.0" in caps.json()[
        "ietf-restconf-monitoring:capabilities"]["capability"]


async def test_get_username_list_is_rfc7951_pretty_and_key_ordered(rig: Rig) -> None:
    resp = await rig.client.get(USERS)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/yang-data+json"
    doc = resp.json()
    assert resp.content == (json.dumps(doc, indent=2) + "\n").encode()
    users = doc["Cisco-IOS-XE-native:username"]
    assert [u["name"] for u in users] == ["admin", "netops", "viewer"]
    admin, netops, viewer = users
    assert admin["privilege"] == 15
    assert admin["secret"]["encryption"] == "9"
    assert verify_hash(ADMIN[1], admin["secret"]["secret"])
    assert netops["password"] == {"encryption": "0", "password": "Old-Pass#1"}
    assert viewer == {"name": "viewer", "privilege": 1, "secret": {"encryption": "9", "secret": TYPE9_VECTOR}}
    assert (await rig.client.get(USERS + "/")).json() == doc


async def test_get_one_entry_percent_decoded_and_missing_is_404(rig: Rig) -> None:
    rig.device.set_user("ops@site/1", kind="secret", clear="Some-Secret-1", privilege=15)
    one = await rig.client.get(f"{USERS}=ops%40site%2F1")
    assert one.status_code == 200
    (entry,) = one.json()["Cisco-IOS-XE-native:username"]
    assert entry["name"] == "ops@site/1"
    slash = await rig.client.get(f"{USERS}=netops/")
    assert slash.json()["Cisco-IOS-XE-native:username"][0]["name"] == "netops"
    missing = await rig.client.get(f"{USERS}=ghost")
    assert missing.status_code == 404
    assert error_of(missing)["error-tag"] == "invalid-value"
    assert error_of(missing)["error-message"] == "uri keypath not found"


async def test_get_native_has_hostname_enable_and_users(rig: Rig) -> None:
    native = (await rig.client.get(NATIVE)).json()["Cisco-IOS-XE-native:native"]
    assert list(native) == ["hostname", "enable", "username"]
    assert native["hostname"] == "R1"
    assert native["enable"]["secret"]["type"] == "9"
    assert verify_hash("En4ble-Secret", native["enable"]["secret"]["secret"])


async def test_fields_selects_members_and_renders_only_those(rig: Rig) -> None:
    # RFC 8040 §4.8.3, as IOS XE advertises it (capability fields:1.0); keyturn reads AAA this way.
    assert (await rig.client.get(f"{NATIVE}?fields=aaa;login")).status_code == 204   # neither configured
    rig.device.set_aaa(AaaConfig(new_model=True, login=("local",), exec_authorization=True, max_fail=5,
                                 block_for=(60, 3, 30)))
    rig.device.set_user("fresh", kind="secret", clear="Not-Hashed-Yet1", privilege=15)
    answer = await rig.client.get(f"{NATIVE}?fields=aaa;login")
    native = answer.json()["Cisco-IOS-XE-native:native"]
    assert set(native) == {"aaa", "login"}
    assert native["login"] == {"block-config": {"block-for": 60, "attempts": 3, "within": 30}}
    assert "Cisco-IOS-XE-aaa:new-model" in native["aaa"]
    deep = (await rig.client.get(f"{NATIVE}?fields=aaa/new-model")).json()["Cisco-IOS-XE-native:native"]
    assert deep == {"aaa": {"Cisco-IOS-XE-aaa:new-model": [None]}}
    # the users were not rendered: the new secret still waits for its first read to be hashed
    fresh = rig.device.user("fresh")
    assert fresh is not None and fresh.credential is not None and fresh.credential._stored is None
    names = (await rig.client.get(f"{USERS}?fields=name")).json()["Cisco-IOS-XE-native:username"]
    assert names == [{"name": n} for n in ("admin", "fresh", "netops", "viewer")]
    nested = (await rig.client.get(f"{NATIVE}?fields=username(name;secret/encryption)")).json()
    assert nested["Cisco-IOS-XE-native:native"]["username"][0] == {"name": "admin",
                                                                  "secret": {"encryption": "9"}}
    for bad in ("", "aaa;", "aaa(login", "a b", "(aaa)"):
        refused = await rig.client.get(NATIVE, params={"fields": bad})
        assert refused.status_code == 400, bad
        assert refused.json()["ietf-restconf:errors"]["error"][0]["error-tag"] == "invalid-value"


async def test_accept_header_ignored_answer_is_json(rig: Rig) -> None:
    resp = await rig.client.get(USERS, headers={"Accept": "application/yang-data+xml"})
    assert resp.headers["content-type"] == "application/yang-data+json"
    assert "Cisco-IOS-XE-native:username" in resp.json()


# ---- writes and persistence ----------------------------------------------------------------------

async def test_keeper_style_patch_then_reboot_without_save_loses_it(rig: Rig) -> None:
    resp = await rig.send("PATCH", NATIVE + "/", user_doc(name="netops", password={"password": "New-Pass#2"}))
    assert resp.status_code == 204
    got = (await rig.client.get(f"{USERS}=netops")).json()["Cisco-IOS-XE-native:username"][0]
    assert got == {"name": "netops", "privilege": 15,
                   "password": {"encryption": "0", "password": "New-Pass#2"}}
    assert rig.device.authenticate("netops", "New-Pass#2") is not None
    rig.device.reboot()
    assert rig.device.authenticate("netops", "Old-Pass#1") is not None
    assert rig.device.authenticate("netops", "New-Pass#2") is None


async def test_patch_save_config_reboot_keeps_it(rig: Rig) -> None:
    doc = entry_doc(name="netops", secret={"encryption": "0", "secret": "Fresh-Secret#3"})
    # Switching password → secret is refused by IOS; remove first, as the reference explains.
    assert (await rig.client.delete(f"{USERS}=netops")).status_code == 204
    assert (await rig.send("PUT", f"{USERS}=netops", doc)).status_code == 201
    save = await rig.client.post(SAVE)
    assert save.status_code == 200
    assert save.content == (
        b'{\n  "cisco-ia:output": {\n    "result": "Save running-config successful"\n  }\n}\n'
    )
    assert len(save.content) == 78
    rig.device.reboot()
    assert rig.device.authenticate("netops", "Fresh-Secret#3") is not None


async def test_clear_secret_is_stored_as_type9(rig: Rig) -> None:
    doc = user_doc(name="admin", secret={"encryption": "0", "secret": "Rotated-Adm1n!"})
    assert (await rig.send("PATCH", NATIVE, doc)).status_code == 204
    # The admin's own credential changed: the old one is refused on the next request.
    assert (await rig.client.get(USERS)).status_code == 401
    async with rig.other_client(("admin", "Rotated-Adm1n!")) as client:
        entry = (await client.get(f"{USERS}=admin")).json()["Cisco-IOS-XE-native:username"][0]
    assert entry["privilege"] == 15
    assert entry["secret"]["encryption"] == "9"
    assert entry["secret"]["secret"].startswith("$9$")
    assert verify_hash("Rotated-Adm1n!", entry["secret"]["secret"])


async def test_hashed_secret_input_is_kept_verbatim(rig: Rig) -> None:
    doc = entry_doc(name="viewer", secret={"encryption": "9", "secret": TYPE9_VECTOR.replace("cvWd", "cvWe")})
    assert (await rig.send("PATCH", f"{USERS}=viewer", doc)).status_code == 204
    got = (await rig.client.get(f"{USERS}=viewer")).json()["Cisco-IOS-XE-native:username"][0]
    assert got["secret"]["secret"] == TYPE9_VECTOR.replace("cvWd", "cvWe")
    bad = entry_doc(name="viewer", secret={"encryption": "9", "secret": "not-a-hash"})
    resp = await rig.send("PATCH", f"{USERS}=viewer", bad)
    assert resp.status_code == 400
    assert error_of(resp)["error-message"] == "inconsistent value: Device refused one or more commands"


async def test_patch_on_native_creates_missing_user_but_entry_patch_is_404(rig: Rig) -> None:
    created = await rig.send("PATCH", NATIVE, user_doc(name="newbie", secret={"secret": "Brand-New#1"}))
    assert created.status_code == 204
    assert rig.device.authenticate("newbie", "Brand-New#1") is not None
    newbie = rig.device.user("newbie")
    assert newbie is not None and newbie.privilege == 1
    missing = await rig.send("PATCH", f"{USERS}=ghost", entry_doc(name="ghost", secret={"secret": "Nope#1"}))
    assert missing.status_code == 404
    assert rig.device.user("ghost") is None


async def test_patch_merge_keeps_unsent_members(rig: Rig) -> None:
    await rig.send("PATCH", f"{USERS}=viewer", entry_doc(name="viewer", view="RO-VIEW"))
    await rig.send("PATCH", f"{USERS}=viewer", entry_doc(name="viewer", secret={"secret": "Viewer-Pw#9"}))
    got = (await rig.client.get(f"{USERS}=viewer")).json()["Cisco-IOS-XE-native:username"][0]
    assert got["privilege"] == 1
    assert got["view"] == "RO-VIEW"
    assert verify_hash("Viewer-Pw#9", got["secret"]["secret"])


async def test_put_entry_replaces_and_drops_privilege(rig: Rig) -> None:
    doc = entry_doc(name="netops", password={"password": "Put-Pw#1"})
    resp = await rig.send("PUT", f"{USERS}=netops", doc)
    assert resp.status_code == 204
    got = (await rig.client.get(f"{USERS}=netops")).json()["Cisco-IOS-XE-native:username"][0]
    assert got == {"name": "netops", "privilege": 1, "password": {"encryption": "0", "password": "Put-Pw#1"}}
    other = entry_doc(name="other", password={"password": "x-Pw#1"})
    mismatch = await rig.send("PUT", f"{USERS}=netops", other)
    assert mismatch.status_code == 400
    assert rig.device.user("other") is None


async def test_put_username_list_replaces_all_users(rig: Rig) -> None:
    doc = {"Cisco-IOS-XE-native:username": [
        {"name": "admin", "privilege": 15, "secret": {"encryption": "0", "secret": ADMIN[1]}},
        {"name": "solo", "privilege": 15, "secret": {"encryption": "0", "secret": "Solo-Pw#1"}},
    ]}
    assert (await rig.send("PUT", USERS, doc)).status_code == 204
    names = [u["name"] for u in (await rig.client.get(USERS)).json()["Cisco-IOS-XE-native:username"]]
    assert names == ["admin", "solo"]


async def test_post_creates_child_and_conflicts_when_present(rig: Rig) -> None:
    doc = entry_doc(name="fresh", privilege=15, secret={"encryption": "0", "secret": "Post-Pw#1"})
    resp = await rig.send("POST", NATIVE, doc)
    assert resp.status_code == 201
    assert resp.headers["location"].endswith("/Cisco-IOS-XE-native:native/username=fresh")
    assert rig.device.authenticate("fresh", "Post-Pw#1") is not None
    again = await rig.send("POST", NATIVE, doc)
    assert again.status_code == 409
    assert error_of(again)["error-tag"] == "data-exists"


async def test_delete_entry_then_404(rig: Rig) -> None:
    assert (await rig.client.delete(f"{USERS}=viewer")).status_code == 204
    assert rig.device.user("viewer") is None
    second = await rig.client.delete(f"{USERS}=viewer")
    assert second.status_code == 404


# ---- IOS rules -----------------------------------------------------------------------------------

async def test_password_on_secret_user_is_refused_and_untouched(rig: Rig) -> None:
    before = (await rig.client.get(f"{USERS}=admin")).json()
    resp = await rig.send("PATCH", NATIVE, user_doc(name="admin", password={"password": "Plain-Pw#1"}))
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["error-tag"] == "invalid-value"
    assert err["error-message"] == "inconsistent value: Device refused one or more commands"
    assert (await rig.client.get(f"{USERS}=admin")).json() == before


async def test_password_and_secret_in_one_entry_is_refused(rig: Rig) -> None:
    doc = user_doc(name="netops", password={"password": "A-Pw#1"}, secret={"secret": "B-Pw#1"})
    resp = await rig.send("PATCH", NATIVE, doc)
    assert resp.status_code == 400
    assert rig.device.authenticate("netops", "Old-Pass#1") is not None


async def test_overlong_password_refused_and_whole_request_untouched(rig: Rig) -> None:
    doc = {"Cisco-IOS-XE-native:native": {"username": [
        {"name": "viewer", "privilege": 15},
        {"name": "netops", "password": {"password": "x" * 128}},
    ]}}
    resp = await rig.send("PATCH", NATIVE, doc)
    assert resp.status_code == 400
    assert rig.device.authenticate("netops", "Old-Pass#1") is not None
    viewer = rig.device.user("viewer")
    assert viewer is not None and viewer.privilege == 1
    ok = await rig.send("PATCH", NATIVE, user_doc(name="netops", password={"password": "y" * 127}))
    assert ok.status_code == 204


async def test_illegal_character_refused(rig: Rig) -> None:
    resp = await rig.send("PATCH", NATIVE, user_doc(name="netops", password={"password": "caf\u00e9-Pw#1"}))
    assert resp.status_code == 400
    assert rig.device.authenticate("netops", "Old-Pass#1") is not None


# ---- strict RFC 7951 typing (the real model must agree) ------------------------------------------

@pytest.mark.parametrize(
    ("entry", "tag", "fragment"),
    [
        ({"name": "netops", "password": {"encryption": 0, "password": "Pw-1#abc"}}, "malformed-message",
         "encryption"),
        ({"name": "netops", "algorithm-type": "scrypt"}, "malformed-message",
         "unknown element: algorithm-type"),
        ({"name": "netops", "privilege": 16}, "invalid-value", "privilege"),
        ({"name": "netops", "privilege": "15"}, "malformed-message", "privilege"),
        ({"name": "netops", "secret": {"encryption": "7", "secret": "0822455D0A16"}}, "invalid-value",
         "encryption"),
    ],
)
async def test_strict_typing_rejections(rig: Rig, entry: dict[str, Any], tag: str, fragment: str) -> None:
    resp = await rig.send_invalid("PATCH", NATIVE, {"Cisco-IOS-XE-native:native": {"username": [entry]}})
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["error-tag"] == tag
    assert fragment in err["error-message"]
    assert rig.device.authenticate("netops", "Old-Pass#1") is not None


async def test_invalid_json_is_malformed(rig: Rig) -> None:
    resp = await rig.client.patch(NATIVE, content=b"{not json")
    assert resp.status_code == 400
    assert error_of(resp)["error-tag"] == "malformed-message"


async def test_unknown_operation_and_method(rig: Rig) -> None:
    rpc = await rig.client.post("/restconf/operations/Cisco-IOS-XE-cli-rpc:config-ios-cli-trans")
    assert rpc.status_code == 400
    assert error_of(rpc)["error-message"] == "invalid path"
    wrong = await rig.client.delete(NATIVE)
    assert wrong.status_code == 405
    assert "PATCH" in wrong.headers["allow"]


# ---- authentication -------------------------------------------------------------------------------

async def test_wrong_password_and_no_credentials_get_401(rig: Rig) -> None:
    for auth in (("admin", "wrong"), None):
        async with rig.other_client(auth) as client:
            resp = await client.get(USERS)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == 'Basic realm="restconf"'
        assert error_of(resp)["error-tag"] == "access-denied"


@pytest.mark.parametrize("status", [401, 403])
async def test_user_below_privilege_15_is_denied(yang: YangValidator, ca: SimCA, status: int) -> None:
    r = await start_rig(yang, ca, non_priv15_status=status)
    try:
        async with r.other_client(("viewer", "123456")) as client:
            resp = await client.get(USERS)
        assert resp.status_code == status
        assert error_of(resp)["error-tag"] == "access-denied"
        assert ("www-authenticate" in resp.headers) is (status == 401)
    finally:
        await r.client.aclose()
        await r.frontend.stop()


# ---- error shapes and locking ---------------------------------------------------------------------

async def test_legacy_error_shape(yang: YangValidator, ca: SimCA) -> None:
    r = await start_rig(yang, ca, errors_shape="legacy")
    try:
        resp = await r.client.get(f"{USERS}=ghost")
        assert resp.status_code == 404
        entry = error_of(resp, "legacy")
        assert list(entry) == sorted(entry)
        assert entry["error-message"] == "uri keypath not found"
    finally:
        await r.client.aclose()
        await r.frontend.stop()


async def test_overlapping_write_gets_lock_denied(yang: YangValidator, ca: SimCA) -> None:
    r = await start_rig(yang, ca, save_delay=60.0)
    try:
        async with r.other_client(ADMIN) as saver:
            save = asyncio.create_task(saver.post(SAVE))
            while r.frontend.requests < 1:  # the save handler takes the lock without yielding first
                await asyncio.sleep(0.01)
            resp = await r.send("PATCH", NATIVE, user_doc(name="netops", password={"password": "Lk-Pw#1"}))
            assert resp.status_code == 409
            assert error_of(resp)["error-tag"] == "lock-denied"
            assert r.device.authenticate("netops", "Old-Pass#1") is not None
            await r.frontend.stop()
            with pytest.raises(httpx.HTTPError):
                (await save).raise_for_status()
        assert r.device.save_count == 1  # only make_device()'s save
    finally:
        await r.client.aclose()
        await r.frontend.stop()


async def test_type7_password_input_is_stored_and_shown_as_sent(rig: Rig) -> None:
    doc = entry_doc(name="netops", password={"encryption": "7", "password": "0822455D0A16"})
    assert (await rig.send("PATCH", f"{USERS}=netops", doc)).status_code == 204
    got = (await rig.client.get(f"{USERS}=netops")).json()["Cisco-IOS-XE-native:username"][0]
    assert got["password"] == {"encryption": "7", "password": "0822455D0A16"}
    async with rig.other_client(("netops", "cisco")) as client:
        assert (await client.get(f"{USERS}=netops")).status_code == 200


async def test_head_answers_headers_only(rig: Rig) -> None:
    resp = await rig.client.head(USERS)
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers["content-type"] == "application/yang-data+json"
