"""RESTCONF simulator fault switches, each switched on and observed over a real HTTPS socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import IosXeDevice
from keyturn.sim.iosxe_restconf import RestconfFrontend
from keyturn.sim.tls import SimCA
from tests.yang_validate import YangValidator, load_validator

NATIVE = "/restconf/data/Cisco-IOS-XE-native:native"
USERS = f"{NATIVE}/username"
ADMIN = ("admin", "Adm1n-Pass!")
HEADERS = {"Accept": "application/yang-data+json", "Content-Type": "application/yang-data+json"}
# Long enough never to elapse in a test: the request is released by stop(), not by the clock.
NEVER = 600.0
SHORT_CLIENT_TIMEOUT = httpx.Timeout(10.0, read=0.3)


@pytest.fixture(scope="session")
def yang() -> YangValidator:
    return load_validator()


@pytest.fixture(scope="session")
def ca() -> SimCA:
    return SimCA.create()


class Rig:
    def __init__(self, yang: YangValidator, ca: SimCA) -> None:
        self.yang, self.ca = yang, ca
        self.device = IosXeDevice("r1", hostname="R1")
        self.device.set_user("admin", kind="secret", clear=ADMIN[1], privilege=15)
        self.device.set_user("netops", kind="secret", clear="Old-Secret#1", privilege=15)
        self.faults = Faults(seed=11)
        self.frontend = RestconfFrontend(self.device, self.faults)
        self.base = ""

    async def start(self) -> None:
        port = await self.frontend.start(ssl=self.ca.server_context("127.0.0.1"))
        self.base = f"https://127.0.0.1:{port}"

    def client(self, timeout: httpx.Timeout | float = 10.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, verify=self.ca.client_context(), auth=ADMIN,
                                 headers=HEADERS, timeout=timeout)

    def rotate_doc(self, secret: str) -> bytes:
        doc = {"Cisco-IOS-XE-native:native": {"username": [{"name": "netops", "secret": {"secret": secret}}]}}
        self.yang.validate(doc)
        return json.dumps(doc).encode()

    def answer(self, resp: httpx.Response) -> dict[str, Any]:
        doc: dict[str, Any] = resp.json()
        self.yang.validate(doc)
        return doc


@pytest.fixture
async def rig(yang: YangValidator, ca: SimCA) -> AsyncIterator[Rig]:
    r = Rig(yang, ca)
    await r.start()
    yield r
    await r.frontend.stop()


def still_old(rig: Rig) -> bool:
    return rig.device.authenticate("netops", "Old-Secret#1") is not None


async def test_down_closes_connections_at_once(rig: Rig) -> None:
    rig.faults.update(down=True)
    async with rig.client() as client:
        with pytest.raises(httpx.TransportError):
            await client.patch(NATIVE, content=rig.rotate_doc("Down-Secret#1"))
        assert still_old(rig)
        rig.faults.update(down=False)
        assert (await client.get(USERS)).status_code == 200


async def test_latency_delays_the_answer(rig: Rig) -> None:
    rig.faults.update(latency=NEVER)
    async with rig.client(SHORT_CLIENT_TIMEOUT) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(USERS)
    rig.faults.update(latency=0.0)
    async with rig.client() as client:
        assert (await client.get(USERS)).status_code == 200


async def test_error_rate_answers_503_operation_failed(rig: Rig) -> None:
    rig.faults.update(error_rate=1.0)
    async with rig.client() as client:
        resp = await client.patch(NATIVE, content=rig.rotate_doc("Err-Secret#1"))
    assert resp.status_code == 503
    (err,) = rig.answer(resp)["ietf-restconf:errors"]["error"]
    assert err["error-tag"] == "operation-failed"
    assert still_old(rig)


async def test_error_rate_is_a_seeded_probability(rig: Rig) -> None:
    rig.faults.update(error_rate=0.5, seed=3)
    async with rig.client() as client:
        first = [(await client.get(USERS)).status_code for _ in range(30)]
        rig.faults.update(seed=3)
        second = [(await client.get(USERS)).status_code for _ in range(30)]
    assert set(first) == {200, 503}
    assert first == second


async def test_timeout_rate_accepts_and_never_answers(rig: Rig) -> None:
    rig.faults.update(timeout_rate=1.0)
    async with rig.client(SHORT_CLIENT_TIMEOUT) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.patch(NATIVE, content=rig.rotate_doc("Hang-Secret#1"))
    assert still_old(rig)
    assert rig.frontend.requests == 1


async def test_reset_rate_aborts_without_answer(rig: Rig) -> None:
    rig.faults.update(reset_rate=1.0)
    async with rig.client() as client:
        with pytest.raises(httpx.TransportError):
            await client.patch(NATIVE, content=rig.rotate_doc("Reset-Secret#1"))
    assert still_old(rig)


async def test_drop_after_apply_applies_then_drops(rig: Rig) -> None:
    rig.faults.update(drop_after_apply=1)
    async with rig.client() as client:
        with pytest.raises(httpx.TransportError):
            await client.patch(NATIVE, content=rig.rotate_doc("Dropped-Secret#1"))
        # The change landed although the client never heard back: it must GET/verify, not assume.
        assert rig.device.authenticate("netops", "Dropped-Secret#1") is not None
        assert rig.faults.drop_after_apply == 0
        resp = await client.patch(NATIVE, content=rig.rotate_doc("Answered-Secret#1"))
    assert resp.status_code == 204


async def test_refuse_passwords_refuses_next_n_credential_writes(rig: Rig) -> None:
    rig.faults.update(refuse_passwords=1)
    async with rig.client() as client:
        # A write without a credential does not consume the switch.
        privilege_only = {"Cisco-IOS-XE-native:native": {"username": [{"name": "netops", "privilege": 15}]}}
        rig.yang.validate(privilege_only)
        assert (await client.patch(NATIVE, content=json.dumps(privilege_only).encode())).status_code == 204
        refused = await client.patch(NATIVE, content=rig.rotate_doc("Refused-Secret#1"))
        assert refused.status_code == 400
        (err,) = rig.answer(refused)["ietf-restconf:errors"]["error"]
        assert err["error-tag"] == "invalid-value"
        assert err["error-message"] == "inconsistent value: Device refused one or more commands"
        assert still_old(rig)
        accepted = await client.patch(NATIVE, content=rig.rotate_doc("Accepted-Secret#1"))
    assert accepted.status_code == 204
    assert rig.device.authenticate("netops", "Accepted-Secret#1") is not None


async def test_stop_releases_hung_requests(rig: Rig) -> None:
    rig.faults.update(timeout_rate=1.0)
    async with rig.client(SHORT_CLIENT_TIMEOUT) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(USERS)
    await rig.frontend.stop()
    with pytest.raises(httpx.ConnectError):
        async with rig.client() as client:
            await client.get(USERS)
