"""Issue 12, item 1: an operator token must not be able to send a credential anywhere.

The attack as reported: as an operator, give the record holding an admin credential (a Meraki API key,
a device admin) a rotation profile whose options point a verifier — or a proxy — at the attacker's
listener, then rotate it: the first verification posts the current secret there. Each test performs
the attack against the real API app and a real listener, and checks that the listener got nothing and
the API said no.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keyturn.engine.accounts import resolve_account
from keyturn.engine.outcome import Outcome
from keyturn.engine.profile import PROFILE_OPTIONS, RotationProfile, load_profile, set_profile
from keyturn.errors import ProfileError
from keyturn.secret import Secret
from keyturn.vault import Field
from tests.security.conftest import Catcher
from tests.unit.api_world import Api
from tests.unit.engine_world import ADMIN, World

API_KEY = "meraki-api-key-0123456789abcdef0123"


def meraki_world(world: World) -> dict[str, str]:
    """A Meraki network, the record holding its API key, and a user rotated with that key (set by an
    admin, the legitimate way). The network's base URL leads nowhere: nothing may be sent there."""
    vault = world.vault
    net = vault.add(type="pamMerakiNetwork", title="Meraki HQ", custom=[
        Field("text", "network_id", ["N_1"]), Field("text", "org_id", ["O_1"]),
        Field("text", "base_url", ["http://127.0.0.1:9/api/v1"])])
    key = vault.add(type="login", title="Meraki API key", fields=[
        Field("login", value=["dashboard-api"]), Field("password", value=[Secret(API_KEY)])])
    alice = vault.add(type="pamUser", title="alice", fields=[
        Field("login", value=["alice@example.com"]), Field("password", value=[Secret("Alice-Passw0rd-1")])])
    set_profile(vault, alice.uid, target="meraki-auth-user", resource=net.uid, admin=key.uid)
    # The device admin serves the IOS XE user too (the world's fake target stands for the device).
    set_profile_raw(world, world.user, admin=world.admin.uid)
    return {"net": net.uid, "key": key.uid, "alice": alice.uid}


def set_profile_raw(world: World, uid: str, **profile: Any) -> None:
    """Store a profile without `set_profile`'s checks: what a profile stored before the fix looks like."""
    data: dict[str, Any] = {"target": "fake", "resource": world.resource.uid, "admin": None}
    data.update(profile)
    world.vault.set_meta(uid, "rotation", RotationProfile(**data).to_meta())


async def attack(api: Api, victim: str, profile: dict[str, Any]) -> tuple[int, int]:
    """Operator: PUT the profile on `victim`, then POST a rotation of it and let it run if accepted.
    Returns both status codes."""
    op = api.auth("operator")
    put = await api.client.put(f"/records/{victim}/rotation", headers=op, json=profile)
    post = await api.client.post("/rotations", headers=op, json={"records": [victim]})
    if post.status_code == 202:
        for accepted in post.json()["rotations"]:
            await api.wait_rotation(accepted["id"])
    return put.status_code, post.status_code


@pytest.mark.parametrize("victim", ["key", "device admin"])
async def test_operator_cannot_point_a_verifier_at_a_catcher(api: Api, catcher: Catcher, victim: str) -> None:
    ids = meraki_world(api.world)
    uid, secret = (ids["key"], API_KEY) if victim == "key" else (api.world.admin.uid, ADMIN)
    put, post = await attack(api, uid, {"target": "meraki-auth-user", "resource": ids["net"], "admin": uid,
                                        "options": {"verify_url": catcher.url()}})
    assert not catcher.saw(secret), "the credential reached the attacker's listener"
    assert catcher.received == []
    assert put == 422 and post == 422
    assert api.world.vault.secret(uid) == Secret(secret)              # nothing rotated either


@pytest.mark.parametrize("option", ["verify_url", "proxy", "base_url", "ca_bundle", "fingerprint", "insecure",
                                    "ssh_host_key", "host_key_fingerprint", "ssh_known_hosts",
                                    "ssh_algorithms", "auth_header", "tofu_anything"])
async def test_every_option_outside_the_allow_list_is_refused_when_set(api: Api, option: str) -> None:
    uid = api.world.add_user("bob", "bob", "Bob-Passw0rd-1")
    r = await api.client.put(f"/records/{uid}/rotation", headers=api.auth("admin"),
                             json={"target": "iosxe-restconf", "resource": api.world.resource.uid,
                                   "options": {option: "x"}})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert f"profile option {option!r} is not allowed" in detail
    assert all(name in detail for name in PROFILE_OPTIONS)            # it names what is allowed
    assert "resource record" in detail


@pytest.mark.parametrize(("options", "message"), [
    ({"mode": "cleartext"}, "mode must be one of auto, secret, password, not 'cleartext'"),
    ({"verify": "telepathy"}, "verify must be one of auto, login, hash, both"),
    ({"failed_login_budget": "101"}, "failed_login_budget must be a whole number 0-100"),
    ({"failed_login_budget": "-1"}, "failed_login_budget must be a whole number 0-100"),
    ({"verify_via": "http://127.0.0.1:1/"}, "verify_via must be one of ssh"),
])
def test_allowed_options_are_typed(world: World, options: dict[str, str], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        set_profile(world.vault, world.user, target="iosxe-restconf", resource=world.resource.uid,
                    options=options)


def test_allowed_options_reach_only_the_account_and_are_audited(world: World) -> None:
    options = {"mode": "password", "verify": "both", "failed_login_budget": "0", "verify_via": "ssh"}
    set_profile(world.vault, world.user, target="iosxe-restconf", resource=world.resource.uid,
                admin=world.admin.uid, options=options)
    user = world.vault.get(world.user)
    account = resolve_account(world.vault, user, load_profile(user)).account
    assert dict(account.options) == options
    assert not set(options) & set(account.endpoint.options)           # never endpoint settings
    entry = world.vault.audit.list(record_uid=world.user, action="rotation.profile_set")[-1]
    assert entry.details["options"] == options


async def test_a_credential_record_cannot_get_a_profile_even_without_options(api: Api) -> None:
    ids = meraki_world(api.world)
    for uid in (ids["key"], api.world.admin.uid):
        r = await api.client.put(f"/records/{uid}/rotation", headers=api.auth("operator"), json={
            "target": "meraki-auth-user", "resource": ids["net"], "admin": ids["key"]})
        assert r.status_code == 422
        assert "admin credential of the rotation profile of" in r.json()["detail"]


async def test_a_record_with_a_profile_cannot_become_an_admin(api: Api) -> None:
    ids = meraki_world(api.world)
    carol = api.world.add_user("carol", "carol@example.com", "Carol-Passw0rd-1")
    r = await api.client.put(f"/records/{carol}/rotation", headers=api.auth("operator"), json={
        "target": "meraki-auth-user", "resource": ids["net"], "admin": ids["alice"]})
    assert r.status_code == 422
    assert "'alice' has a rotation profile of its own; it cannot be the admin" in r.json()["detail"]


def test_a_record_may_be_its_own_resource_and_admin(world: World) -> None:
    """Keeper's "Cisco Authentication Record": one login record that is the device and the admin."""
    rec = world.vault.add(type="login", title="core-sw1 admin", fields=[
        Field("login", value=["admin"]), Field("password", value=[Secret("Adm1n-Self-9")])],
        custom=[Field("text", "host_endpoint", ["10.0.0.1"])])
    profile = set_profile(world.vault, rec.uid, target="iosxe-restconf", resource=rec.uid, admin=rec.uid)
    assert profile.resource == profile.admin == rec.uid


@pytest.mark.parametrize("option", ["verify_url", "proxy"])
async def test_a_profile_stored_before_the_fix_is_refused_at_rotation(
        api: Api, catcher: Catcher, option: str) -> None:
    """Database-stored options (no `set_profile` on the way) never reach the connection settings."""
    ids = meraki_world(api.world)
    api.world.vault.set_meta(ids["alice"], "rotation", RotationProfile(
        target="meraki-auth-user", resource=ids["net"], admin=ids["key"],
        options={option: catcher.url()}).to_meta())
    r = await api.client.post("/rotations", headers=api.auth("operator"), json={"records": [ids["alice"]]})
    assert r.status_code == 422 and f"profile option {option!r} is not allowed" in r.json()["detail"]
    engine = api.world.engine()
    try:
        result = await engine.rotate(ids["alice"])       # the scheduler's way in: no API pre-check
    finally:
        await engine.aclose()
    assert result.outcome is Outcome.FAILED
    assert f"carries option(s) {option}, which a profile may not set" in result.reason
    await asyncio.sleep(0)
    assert catcher.received == []
    assert api.world.vault.secret(ids["key"]) == Secret(API_KEY)
