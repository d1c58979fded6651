"""The RESTCONF simulator's connection counters over real TLS sockets: keep-alive and session resumption.

`connections` counts accepted connections (each one a TLS handshake), `tls_resumed` those that resumed
an earlier session; the simulator-cost benchmark reads both through the lab's `/stats`.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import IosXeDevice
from keyturn.sim.iosxe_restconf import RestconfFrontend
from keyturn.sim.tls import SimCA

USER = "/restconf/data/Cisco-IOS-XE-native:native/username=admin"
ADMIN = ("admin", "Adm1n-Pass!")
HEADERS = {"Accept": "application/yang-data+json"}


@pytest.fixture
async def served() -> AsyncIterator[tuple[RestconfFrontend, int, SimCA]]:
    ca = SimCA.create()
    device = IosXeDevice("r1")
    device.set_user(ADMIN[0], kind="secret", clear=ADMIN[1], privilege=15)
    frontend = RestconfFrontend(device, Faults())
    port = await frontend.start("127.0.0.1", 0, ca.server_context("127.0.0.1"))
    try:
        yield frontend, port, ca
    finally:
        await frontend.stop()


async def test_requests_on_one_kept_alive_connection_count_one_handshake(
    served: tuple[RestconfFrontend, int, SimCA],
) -> None:
    frontend, port, ca = served
    for _ in range(2):
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=ca.client_context(),
                                     auth=ADMIN, headers=HEADERS) as client:
            for _ in range(3):
                assert (await client.get(USER)).status_code == 200
    assert (frontend.requests, frontend.connections, frontend.tls_resumed) == (6, 2, 0)


def _get_over_tls(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None) -> ssl.SSLSession:
    """One request on a fresh connection (blocking stdlib ssl, which can offer a saved session)."""
    token = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
        tls.sendall(f"GET {USER} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
                    "Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:40]
        assert tls.session_reused is (session is not None)
        assert tls.session is not None      # TLS 1.3: the ticket arrived with the answer
        return tls.session


async def test_a_client_offering_its_ticket_resumes_the_session(
    served: tuple[RestconfFrontend, int, SimCA],
) -> None:
    frontend, port, ca = served
    ctx = ca.client_context()
    session = await asyncio.to_thread(_get_over_tls, port, ctx, None)
    await asyncio.to_thread(_get_over_tls, port, ctx, session)
    assert (frontend.requests, frontend.connections, frontend.tls_resumed) == (2, 2, 1)
