"""Meraki simulator over a real socket (plain HTTP base URL), driven with httpx."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest

from keyturn.sim.meraki import MerakiFrontend
from keyturn.sim.meraki_state import MESSAGES, MerakiState
from tests.unit.test_sim_meraki_schema import schema_errors

ORG_ID = "2930418"
NET_ID = "N_24329156"
UNLIMITED = {"rate_per_org": 1e9, "burst": 10**9, "rate_per_ip": 1e9}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build_world(state: MerakiState, *, extra_orgs: int = 6) -> str:
    """One org/network with users of every kind, plus `extra_orgs` empty orgs; returns an API key."""
    org = state.add_org("Keyturn Lab", org_id=ORG_ID)
    for i in range(extra_orgs):
        state.add_org(f"Spare {i}", org_id=str(1000 + i))
    net = state.add_network(org.id, "Branch 1", network_id=NET_ID)
    for n in range(1, 5):
        state.add_network(org.id, f"Branch {n + 1}")
    state.add_auth_user(net.id, "jane.roe@example.com", "old-pass-1")          # id ends in "="
    state.add_auth_user(net.id, "radius.user@example.com", "old-pass-2", account_type="802.1X")
    state.add_auth_user(net.id, "guest.wifi@example.com", "old-pass-3", account_type="Guest")
    state.add_auth_user(net.id, "netadmin@example.com", "admin-pass", is_admin=True)
    state.add_auth_user(net.id, "a>?@example.com", "old-pass-5")               # id contains "/"
    state.add_auth_user(net.id, "x~~@example.com", "old-pass-6")               # id contains "+"
    return state.add_api_key()


@dataclass
class Lab:
    state: MerakiState
    frontend: MerakiFrontend
    base: str
    key: str

    def client(self, **headers: str) -> httpx.AsyncClient:
        headers = headers or {"Authorization": f"Bearer {self.key}"}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=5)


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    state = MerakiState(seed=11)
    key = build_world(state)
    frontend = MerakiFrontend(state, **UNLIMITED)  # type: ignore[arg-type]
    port = await frontend.start()
    yield Lab(state, frontend, f"http://127.0.0.1:{port}/api/v1", key)
    await frontend.stop()


def uid(email: str) -> str:
    import base64

    return base64.b64encode(email.encode()).decode()


# ------------------------------------------------------------------------------------------ auth, shapes


async def test_both_auth_headers_accepted_and_bad_keys_get_401(lab: Lab) -> None:
    bad_key = "Bearer " + "0" * 40
    async with lab.client() as bearer, lab.client(**{"X-Cisco-Meraki-API-Key": lab.key}) as legacy, \
            lab.client(Accept="application/json") as none, lab.client(Authorization=bad_key) as bad:
        assert (await bearer.get("/organizations")).status_code == 200
        assert (await legacy.get("/organizations")).status_code == 200
        for client in (none, bad):
            r = await client.get(f"/networks/{NET_ID}/merakiAuthUsers")
            assert r.status_code == 401
            assert r.json() == {"errors": ["Invalid API key"]}
            assert r.headers["Content-Type"].startswith("application/json")
            assert r.headers["X-Request-Id"]
    kinds = [r.auth for r in lab.state.requests]
    assert kinds[:2] == ["bearer", "x-cisco-meraki-api-key"]


async def test_every_response_has_request_id_and_json_errors(lab: Lab) -> None:
    async with lab.client() as c:
        seen = set()
        for path in ("/organizations", "/networks/N_missing", "/no/such/route", f"/networks/{NET_ID}/nope"):
            r = await c.get(path)
            seen.add(r.headers["X-Request-Id"])
            assert r.headers["Content-Type"].startswith("application/json")
            if r.status_code >= 400:
                assert isinstance(r.json()["errors"], list) and r.json()["errors"]
        assert len(seen) == 4


async def test_organizations_paginate_with_link_headers(lab: Lab) -> None:
    async with lab.client() as c:
        r = await c.get("/organizations", params={"perPage": 3})
        ids, pages = [o["id"] for o in r.json()], 1
        link = r.headers["Link"]
        assert "rel=first" in link and "rel=next" in link and "rel=last" in link
        assert '"' not in link  # rel is unquoted
        while (m := re.search(r"<([^>]+)>; rel=next", r.headers["Link"])) is not None:
            assert m.group(1).startswith(lab.base)  # absolute URL on the host the client used
            r = await c.get(m.group(1))
            ids += [o["id"] for o in r.json()]
            pages += 1
        assert ids == sorted(ids, key=int) and len(ids) == 7 and pages == 3
        last = re.search(r"<([^>]+)>; rel=last", r.headers["Link"])
        assert last is not None
        r = await c.get(last.group(1))
        assert [o["id"] for o in r.json()] == ids[-3:]
        prev = re.search(r"<([^>]+)>; rel=prev", r.headers["Link"])
        assert prev is not None
        assert [o["id"] for o in (await c.get(prev.group(1))).json()] == ids[1:4]
        for bad in ("2", "9001", "many"):
            r = await c.get("/organizations", params={"perPage": bad})
            assert r.status_code == 400 and "perPage" in r.json()["errors"][0]


async def test_networks_list_paginates_and_network_names_its_org(lab: Lab) -> None:
    async with lab.client() as c:
        r = await c.get(f"/organizations/{ORG_ID}/networks", params={"perPage": 3})
        assert len(r.json()) == 3 and "rel=next" in r.headers["Link"]
        net = (await c.get(f"/networks/{NET_ID}")).json()
        assert net["organizationId"] == ORG_ID and net["id"] == NET_ID
        assert (await c.get(f"/organizations/{ORG_ID}/inventory/devices")).json() == []
        assert (await c.get("/organizations/999")).status_code == 404


# ------------------------------------------------------------------------------------------ auth users


async def test_auth_user_list_and_get_with_encoded_and_raw_ids(lab: Lab) -> None:
    async with lab.client() as c:
        users = (await c.get(f"/networks/{NET_ID}/merakiAuthUsers")).json()
        assert schema_errors(users, "merakiAuthUsers") == []
        assert len(users) == 6
        for email in ("jane.roe@example.com", "a>?@example.com", "x~~@example.com"):
            raw = uid(email)
            for form in (quote(raw, safe=""), raw):
                r = await c.get(f"/networks/{NET_ID}/merakiAuthUsers/{form}")
                assert r.status_code == 200, (form, r.text)
                assert r.json()["email"] == email
        r = await c.get(f"/networks/{NET_ID}/merakiAuthUsers/{uid('ghost@example.com')}")
        assert r.status_code == 404 and r.json()["errors"] == [MESSAGES["user_not_found"]]


async def test_auth_user_create_update_delete(lab: Lab) -> None:
    path = f"/networks/{NET_ID}/merakiAuthUsers"
    async with lab.client() as c:
        body = {"email": "new.user@example.com", "name": "New User", "password": "pw-1-new",
                "accountType": "802.1X", "authorizations": [{"ssidNumber": 1}]}
        r = await c.post(path, json=body)
        assert r.status_code == 201 and schema_errors(r.json(), "merakiAuthUser") == []
        new_id = quote(r.json()["id"], safe="")
        r = await c.put(f"{path}/{new_id}", json={"password": "pw-2-rotated"})
        assert r.status_code == 200 and schema_errors(r.json(), "merakiAuthUser") == []
        assert "pw-2-rotated" not in r.text
        assert lab.state.verify_login(NET_ID, "new.user@example.com", "pw-2-rotated")
        r = await c.delete(f"{path}/{new_id}", params={"delete": "true"})
        assert r.status_code == 204 and r.content == b""
        assert (await c.get(f"{path}/{new_id}")).status_code == 404
        r = await c.post(path, json={"email": "x@example.com"})
        assert r.status_code == 400 and r.json()["errors"]
    assert lab.state.emailed_passwords == 0


async def test_admin_users_refuse_password_change(lab: Lab) -> None:
    async with lab.client() as c:
        r = await c.put(f"/networks/{NET_ID}/merakiAuthUsers/{uid('netadmin@example.com')}",
                        json={"password": "never-applied"})
        assert r.status_code == 400 and r.json() == {"errors": [MESSAGES["admin_immutable"]]}
    assert lab.state.verify_login(NET_ID, "netadmin@example.com", "admin-pass")


# ------------------------------------------------------------------------------------------ SSIDs, iPSKs


async def test_ssid_psk_read_write_and_identity_psks(lab: Lab) -> None:
    async with lab.client() as c:
        assert len((await c.get(f"/networks/{NET_ID}/wireless/ssids")).json()) == 15
        ssid = f"/networks/{NET_ID}/wireless/ssids/3"
        r = await c.put(ssid, json={"authMode": "psk", "psk": "seven77"})
        assert r.status_code == 400
        r = await c.put(ssid, json={"authMode": "psk", "psk": "rotated-psk-1"})
        assert r.status_code == 200
        assert (await c.get(f"/networks/{NET_ID}/wireless/ssids/3")).json()["psk"] == "rotated-psk-1"
        await c.put(f"/networks/{NET_ID}/wireless/ssids/4", json={"authMode": "ipsk-without-radius"})
        base = f"/networks/{NET_ID}/wireless/ssids/4/identityPsks"
        r = await c.post(base, json={"name": "printer", "groupPolicyId": "101", "passphrase": "ipsk-pass-1"})
        assert r.status_code == 201
        ipsk = r.json()["id"]
        r = await c.put(f"{base}/{ipsk}", json={"passphrase": "ipsk-pass-2"})
        assert r.status_code == 200 and r.json()["passphrase"] == "ipsk-pass-2"
        assert (await c.delete(f"{base}/{ipsk}")).status_code == 204
        assert (await c.get(base)).json() == []


# ------------------------------------------------------------------------------------------ API keys


async def test_api_key_generate_limit_and_revoke(lab: Lab) -> None:
    async with lab.client() as c:
        me = (await c.get("/administered/identities/me")).json()
        assert me["authentication"]["api"]["key"]["created"] is True
        r = await c.post("/administered/identities/me/api/keys/generate")
        assert r.status_code == 202
        new_key = r.json()["key"]
        assert re.fullmatch(r"[0-9a-f]{40}", new_key)
        r = await c.post("/administered/identities/me/api/keys/generate")
        assert r.status_code == 400 and r.json() == {"errors": [MESSAGES["too_many_keys"]]}
        keys = (await c.get("/administered/identities/me/api/keys")).json()
        assert sorted(k["suffix"] for k in keys) == sorted([lab.key[-4:], new_key[-4:]])
        r = await c.post(f"/administered/identities/me/api/keys/{lab.key[-4:]}/revoke")
        assert r.status_code == 202 and r.content == b""
        assert (await c.get("/organizations")).status_code == 401  # the old key is gone
    async with lab.client(Authorization=f"Bearer {new_key}") as c:
        assert (await c.get("/organizations")).status_code == 200


# ------------------------------------------------------------------------------------------ rate budget


async def test_org_bucket_allows_about_30_in_two_seconds_and_is_shared_by_keys() -> None:
    clock = FakeClock()
    state = MerakiState(seed=5)
    key = build_world(state)
    key2 = state.add_api_key()
    frontend = MerakiFrontend(state, clock=clock, rate_per_ip=1e9)
    port = await frontend.start()
    try:
        ok = limited = 0
        headers = [{"Authorization": f"Bearer {key}"}, {"X-Cisco-Meraki-API-Key": key2}]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=5) as c:
            start = clock.now
            for i in range(100):  # one request every 20 ms of simulated time, alternating keys
                clock.now = start + i * 0.02
                r = await c.get(f"/networks/{NET_ID}/merakiAuthUsers", headers=headers[i % 2])
                if r.status_code == 429:
                    limited += 1
                    assert r.json() == {"errors": ["API rate limit exceeded for organization"]}
                    assert re.fullmatch(r"[1-9][0-9]*", r.headers["Retry-After"])
                else:
                    assert r.status_code == 200
                    ok += 1
        assert 29 <= ok <= 31
        assert state.stats_for(ORG_ID).rate_limited == limited == 100 - ok
    finally:
        await frontend.stop()


async def test_ip_bucket_covers_requests_without_an_org() -> None:
    clock = FakeClock()
    state = MerakiState(seed=5)
    key = build_world(state)
    frontend = MerakiFrontend(state, clock=clock, rate_per_ip=5)
    port = await frontend.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=5,
                                     headers={"Authorization": f"Bearer {key}"}) as c:
            codes = [(await c.get("/administered/identities/me")).status_code for _ in range(7)]
            assert codes == [200] * 5 + [429] * 2
            clock.now += 1
            assert (await c.get("/administered/identities/me")).status_code == 200
        assert frontend.ip_rate_limited == 2
        assert state.stats_for(ORG_ID).throttled == 0
    finally:
        await frontend.stop()


# ------------------------------------------------------------------------------------------ faults


async def test_rate_limit_storm_answers_429_with_retry_after(lab: Lab) -> None:
    lab.state.faults_for(ORG_ID).update(rate_limit_storm=3, retry_after=7)
    async with lab.client() as c:
        answers = [await c.get(f"/networks/{NET_ID}/merakiAuthUsers") for _ in range(4)]
    assert [r.status_code for r in answers] == [429, 429, 429, 200]
    assert {r.headers["Retry-After"] for r in answers[:3]} == {"7"}
    assert answers[0].json() == {"errors": ["API rate limit exceeded for organization"]}
    assert lab.state.stats_for(ORG_ID).storm_limited == 3


async def test_error_rate_answers_5xx(lab: Lab) -> None:
    lab.state.faults_for(ORG_ID).update(error_rate=1.0)
    async with lab.client() as c:
        answers = [await c.get(f"/organizations/{ORG_ID}") for _ in range(3)]
    assert sorted(r.status_code for r in answers) == [500, 502, 503]
    assert all(r.headers["X-Request-Id"] and r.json()["errors"] for r in answers)
    lab.state.faults_for(ORG_ID).reset()


async def test_latency_and_timeout_hold_the_answer(lab: Lab) -> None:
    faults = lab.state.faults_for(ORG_ID)
    async with lab.client() as c:
        faults.update(latency=30.0)
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"/organizations/{ORG_ID}", timeout=0.3)
        faults.update(latency=0.0, timeout_rate=1.0)
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"/organizations/{ORG_ID}", timeout=0.3)
        faults.update(timeout_rate=0.0)
        assert (await c.get(f"/organizations/{ORG_ID}")).status_code == 200
    assert lab.state.stats_for(ORG_ID).timeouts == 1


async def test_reset_and_down_close_the_connection(lab: Lab) -> None:
    faults = lab.state.faults_for(ORG_ID)
    async with lab.client() as c:
        faults.update(reset_rate=1.0)
        with pytest.raises(httpx.TransportError):
            await c.get(f"/organizations/{ORG_ID}")
        faults.update(reset_rate=0.0, down=True)
        with pytest.raises(httpx.TransportError):
            await c.get(f"/networks/{NET_ID}/merakiAuthUsers")
        faults.update(down=False)
        assert (await c.get(f"/networks/{NET_ID}/merakiAuthUsers")).status_code == 200
    stats = lab.state.stats_for(ORG_ID)
    assert (stats.resets, stats.refused_down) == (1, 1)


async def test_drop_after_apply_changes_the_password_but_never_answers(lab: Lab) -> None:
    lab.state.faults_for(ORG_ID).update(drop_after_apply=1)
    url = f"/networks/{NET_ID}/merakiAuthUsers/{quote(uid('jane.roe@example.com'), safe='')}"
    async with lab.client() as c:
        with pytest.raises(httpx.TransportError):
            await c.put(url, json={"password": "applied-but-unanswered"})
        assert lab.state.verify_login(NET_ID, "jane.roe@example.com", "applied-but-unanswered")
        r = await c.put(url, json={"password": "second-try"})
        assert r.status_code == 200
    assert lab.state.stats_for(ORG_ID).dropped_after_apply == 1
    assert [r.status for r in lab.state.requests if r.method == "PUT"] == [0, 200]


async def test_refuse_passwords_answers_400_and_keeps_the_old_one(lab: Lab) -> None:
    lab.state.faults_for(ORG_ID).update(refuse_passwords=1)
    url = f"/networks/{NET_ID}/merakiAuthUsers/{uid('jane.roe@example.com')}"
    async with lab.client() as c:
        r = await c.put(url, json={"password": "refused-pass"})
    assert r.status_code == 400 and r.json() == {"errors": [MESSAGES["password_policy"]]}
    assert lab.state.verify_login(NET_ID, "jane.roe@example.com", "old-pass-1")


@pytest.mark.parametrize("status", [302, 307, 308])
async def test_redirect_on_write_points_at_a_shard_host(lab: Lab, status: int) -> None:
    lab.state.faults_for(ORG_ID).update(redirect_on_write=True, redirect_status=status)
    shard = lab.state.orgs[ORG_ID].shard
    url = f"/networks/{NET_ID}/merakiAuthUsers/{quote(uid('jane.roe@example.com'), safe='')}"
    async with lab.client() as c:
        assert (await c.get(url)).status_code == 200  # reads are not redirected
        r = await c.put(url, json={"password": "not-yet"})
    assert r.status_code == status
    assert r.headers["Location"] == f"https://n{shard}.meraki.com/api/v1{url}"
    assert lab.state.verify_login(NET_ID, "jane.roe@example.com", "old-pass-1")
    assert lab.state.stats_for(ORG_ID).redirected == 1
