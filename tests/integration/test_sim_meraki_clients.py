"""Unmodified third-party clients against the Meraki simulator: the official SDK (sync and aio),
`requests` the way KeeperPAM's sample script uses it, and httpx — directly and through the CONNECT proxy
with the hard-coded `https://api.meraki.com` base URL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import meraki
import meraki.aio
import pytest
import requests

from keyturn.sim.meraki import MerakiFrontend
from keyturn.sim.meraki_proxy import MerakiProxy
from keyturn.sim.meraki_state import MerakiState
from keyturn.sim.tls import SimCA
from tests.integration.test_sim_meraki_http import NET_ID, ORG_ID, UNLIMITED, build_world
from tests.unit.test_sim_meraki_schema import schema_errors

JANE = "jane.roe@example.com"
JANE_ID = base64.b64encode(JANE.encode()).decode()
API = "https://api.meraki.com/api/v1"
# the SDK's defaults write a log file (with the new password) into the working directory; never here
# The SDK hands `certificate_path` to httpx as `verify=<str>`, which httpx 0.28 deprecates (SDK-side).
SDK_CA_PATH_WARNING = pytest.mark.filterwarnings("ignore:`verify=<str>` is deprecated:DeprecationWarning")
SDK_QUIET = {"suppress_logging": True, "output_log": False, "smart_flow_enabled": False,
             "caller": "KeyturnTests/0.1 Keyturn", "maximum_retries": 2}


@dataclass
class Lab:
    state: MerakiState
    key: str
    base: str        # plain HTTP base URL of the simulator
    proxy: str       # http://127.0.0.1:<proxy port>
    ca_path: str
    mitm: MerakiProxy


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    state = MerakiState(seed=21)
    key = build_world(state)
    frontend = MerakiFrontend(state, **UNLIMITED)  # type: ignore[arg-type]
    port = await frontend.start()
    ca = SimCA.create()
    ca_path = ca.write_ca(tmp_path / "meraki-test-ca.pem")
    proxy = MerakiProxy(port, ca)
    proxy_port = await proxy.start()
    yield Lab(state, key, f"http://127.0.0.1:{port}/api/v1", f"http://127.0.0.1:{proxy_port}", str(ca_path),
              proxy)
    await proxy.stop()
    await frontend.stop()


@contextlib.contextmanager
def sdk(lab: Lab, **options: Any) -> Iterator[meraki.DashboardAPI]:
    """A sync SDK client that is closed afterwards (DashboardAPI itself has no close())."""
    dash = meraki.DashboardAPI(lab.key, **{**SDK_QUIET, **options})
    try:
        yield dash
    finally:
        dash._session.close()


def keeper_style_session(lab: Lab) -> requests.Session:
    """What `HTTPS_PROXY` + `REQUESTS_CA_BUNDLE` give the sample script, set explicitly in-process."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": lab.proxy, "http": lab.proxy}
    session.verify = lab.ca_path
    session.headers.update({"X-Cisco-Meraki-API-Key": lab.key, "Content-Type": "application/json",
                            "Accept": "application/json"})
    return session


def rotate_like_keeper_script(session: requests.Session, email: str, new_password: str) -> str:
    """The sample script's two calls, verbatim in effect: list, match email exactly, PUT raw id."""
    listing = session.get(f"{API}/networks/{NET_ID}/merakiAuthUsers", timeout=5)
    listing.raise_for_status()
    user = next(u for u in listing.json() if u["email"] == email)
    r = session.put(f"{API}/networks/{NET_ID}/merakiAuthUsers/{user['id']}", json={"password": new_password},
                    timeout=5)
    return "Password updated successfully" if r.status_code == 200 else f"Failed: {r.status_code}"


def httpx_via_proxy(lab: Lab) -> httpx.AsyncClient:
    tls = ssl.create_default_context(cafile=lab.ca_path)
    auth = {"Authorization": f"Bearer {lab.key}"}
    return httpx.AsyncClient(proxy=lab.proxy, verify=tls, timeout=5, headers=auth)


# ------------------------------------------------------------------------------------------ official SDK


async def test_sdk_sync_plain_base_url(lab: Lab) -> None:
    def run() -> list[dict]:
        with sdk(lab, base_url=lab.base) as dash:
            users = dash.networks.getNetworkMerakiAuthUsers(NET_ID)
            dash.networks.updateNetworkMerakiAuthUser(NET_ID, JANE_ID, password="sdk-sync-plain")
            return users

    users = await asyncio.to_thread(run)
    assert schema_errors(users, "merakiAuthUsers") == [] and len(users) == 6
    assert lab.state.verify_login(NET_ID, JANE, "sdk-sync-plain")
    # the SDK percent-encodes the id: its trailing "=" arrives as "%3D"
    assert JANE_ID.endswith("=")
    assert any(r.method == "PUT" and r.path.endswith(JANE_ID[:-1] + "%3D") for r in lab.state.requests)


async def test_sdk_aio_plain_base_url(lab: Lab) -> None:
    async with meraki.aio.AsyncDashboardAPI(lab.key, base_url=lab.base, **SDK_QUIET) as dash:
        users = await dash.networks.getNetworkMerakiAuthUsers(NET_ID)
        updated = await dash.networks.updateNetworkMerakiAuthUser(NET_ID, JANE_ID, password="sdk-aio-plain")
    assert schema_errors(users, "merakiAuthUsers") == []
    assert schema_errors(updated, "merakiAuthUser") == []
    assert lab.state.verify_login(NET_ID, JANE, "sdk-aio-plain")


@SDK_CA_PATH_WARNING
async def test_sdk_sync_through_proxy_with_pagination(lab: Lab) -> None:
    def run() -> list[dict]:
        with sdk(lab, requests_proxy=lab.proxy, certificate_path=lab.ca_path) as dash:
            orgs = dash.organizations.getOrganizations(perPage=3, total_pages="all")
            dash.networks.getNetworkMerakiAuthUsers(NET_ID)
            dash.networks.updateNetworkMerakiAuthUser(NET_ID, JANE_ID, password="sdk-sync-proxy")
            return orgs

    orgs = await asyncio.to_thread(run)
    # three pages walked via absolute Link URLs on api.meraki.com (the SDK only follows Meraki hosts)
    assert len(orgs) == 7
    assert sum(1 for r in lab.state.requests if r.path == "/api/v1/organizations") == 3
    assert {r.host for r in lab.state.requests} == {"api.meraki.com"}
    assert lab.state.verify_login(NET_ID, JANE, "sdk-sync-proxy")


@SDK_CA_PATH_WARNING
async def test_sdk_aio_through_proxy(lab: Lab) -> None:
    async with meraki.aio.AsyncDashboardAPI(lab.key, requests_proxy=lab.proxy, certificate_path=lab.ca_path,
                                            **SDK_QUIET) as dash:
        await dash.networks.updateNetworkMerakiAuthUser(NET_ID, JANE_ID, password="sdk-aio-proxy")
        me = await dash.administered.getAdministeredIdentitiesMe()
    assert me["email"] == lab.state.identities[0].email
    assert lab.state.verify_login(NET_ID, JANE, "sdk-aio-proxy")


async def test_sdk_plain_http_meraki_host_through_proxy(lab: Lab) -> None:
    def run() -> list[dict]:
        with sdk(lab, base_url="http://emulator.meraki.com/api/v1", requests_proxy=lab.proxy) as dash:
            return dash.organizations.getOrganizations(perPage=3, total_pages="all")

    assert len(await asyncio.to_thread(run)) == 7
    assert {r.host for r in lab.state.requests} == {"emulator.meraki.com"}


async def test_sdk_honours_integer_retry_after_and_raises_when_told_not_to_wait(lab: Lab) -> None:
    lab.state.faults_for(ORG_ID).update(rate_limit_storm=1, retry_after=1)

    def run() -> int:
        with sdk(lab, base_url=lab.base) as dash:
            assert len(dash.networks.getNetworkMerakiAuthUsers(NET_ID)) == 6  # waited 1 s, retried
        lab.state.faults_for(ORG_ID).update(rate_limit_storm=1)
        with sdk(lab, base_url=lab.base, wait_on_rate_limit=False) as impatient, \
                pytest.raises(meraki.APIError) as exc:
            impatient.networks.getNetworkMerakiAuthUsers(NET_ID)
        return int(exc.value.status)

    assert await asyncio.to_thread(run) == 429
    assert lab.state.stats_for(ORG_ID).storm_limited == 2


@SDK_CA_PATH_WARNING
async def test_sdk_follows_a_302_on_write_to_the_shard_with_the_same_method(lab: Lab) -> None:
    lab.state.faults_for(ORG_ID).update(redirect_on_write=True, redirect_status=302)
    shard = lab.state.orgs[ORG_ID].shard

    def run() -> str:
        with sdk(lab, requests_proxy=lab.proxy, certificate_path=lab.ca_path) as dash:
            dash.networks.updateNetworkMerakiAuthUser(NET_ID, JANE_ID, password="via-shard")
            return str(dash._session._base_url)

    assert await asyncio.to_thread(run) == f"https://n{shard}.meraki.com/api/v1"
    assert lab.state.verify_login(NET_ID, JANE, "via-shard")
    puts = [(r.host, r.status) for r in lab.state.requests if r.method == "PUT"]
    assert puts == [("api.meraki.com", 302), (f"n{shard}.meraki.com", 200)]


# ------------------------------------------------------------------------------------------ requests / httpx


async def test_keeper_style_requests_through_proxy_rotates(lab: Lab) -> None:
    session = keeper_style_session(lab)
    out = await asyncio.to_thread(rotate_like_keeper_script, session, JANE, "keeper-style-1")
    session.close()
    assert out == "Password updated successfully"
    assert lab.state.verify_login(NET_ID, JANE, "keeper-style-1")
    put = next(r for r in lab.state.requests if r.method == "PUT")
    assert put.auth == "x-cisco-meraki-api-key" and put.path.endswith(JANE_ID)  # raw id, legacy header


async def test_302_on_write_turns_the_put_into_a_get_that_looks_successful(lab: Lab) -> None:
    """The hazard the fault exists for: requests follows 302 with a body-less GET, which answers 200."""
    lab.state.faults_for(ORG_ID).update(redirect_on_write=True, redirect_status=302)
    session = keeper_style_session(lab)
    out = await asyncio.to_thread(rotate_like_keeper_script, session, JANE, "lost-in-redirect")
    session.close()
    assert out == "Password updated successfully"  # what the script would print ...
    assert lab.state.verify_login(NET_ID, JANE, "old-pass-1")  # ... while nothing changed
    shard = lab.state.orgs[ORG_ID].shard
    follow = [r for r in lab.state.requests if r.host == f"n{shard}.meraki.com"]
    assert [(r.method, r.status) for r in follow] == [("GET", 200)]


async def test_307_on_write_keeps_the_body_but_requests_drops_bearer_cross_host(lab: Lab) -> None:
    lab.state.faults_for(ORG_ID).update(redirect_on_write=True, redirect_status=307)
    session = keeper_style_session(lab)
    out = await asyncio.to_thread(rotate_like_keeper_script, session, JANE, "kept-through-307")
    assert out == "Password updated successfully"
    assert lab.state.verify_login(NET_ID, JANE, "kept-through-307")
    # Same redirect with Bearer auth: requests strips Authorization on the cross-host hop → 401
    del session.headers["X-Cisco-Meraki-API-Key"]
    session.headers["Authorization"] = f"Bearer {lab.key}"
    url = f"{API}/networks/{NET_ID}/merakiAuthUsers/{JANE_ID}"
    r = await asyncio.to_thread(session.put, url, json={"password": "never-arrives"}, timeout=5)
    session.close()
    assert r.status_code == 401 and r.json() == {"errors": ["Invalid API key"]}
    assert lab.state.verify_login(NET_ID, JANE, "kept-through-307")


async def test_httpx_through_proxy_reaches_api_and_shard_hosts(lab: Lab) -> None:
    shard = lab.state.orgs[ORG_ID].shard
    async with httpx_via_proxy(lab) as c:
        r = await c.get(f"{API}/organizations", params={"perPage": 3})
        assert r.status_code == 200 and f"<{API}/organizations?" in r.headers["Link"]
        r = await c.get(f"https://n{shard}.meraki.com/api/v1/networks/{NET_ID}")
        assert r.status_code == 200 and r.json()["organizationId"] == ORG_ID
        with pytest.raises(httpx.ProxyError):
            await c.get("https://example.com/")
        with pytest.raises(httpx.ProxyError):
            await c.get("https://api.meraki.com.attacker.test/")
    assert lab.mitm.refused == ["example.com", "api.meraki.com.attacker.test"]


async def test_drop_after_apply_reaches_the_client_through_the_tls_tunnel(lab: Lab) -> None:
    lab.state.faults_for(ORG_ID).update(drop_after_apply=1)
    async with httpx_via_proxy(lab) as c:
        with pytest.raises(httpx.TransportError):
            await c.put(f"{API}/networks/{NET_ID}/merakiAuthUsers/{JANE_ID}", json={"password": "dropped-1"})
    assert lab.state.verify_login(NET_ID, JANE, "dropped-1")
