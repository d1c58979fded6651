"""Issue 12, item 4: a pinned fingerprint holds through the `proxy` option.

The attack: the resource pins Meraki's certificate and sends traffic through a proxy; the proxy
intercepts (terminates TLS with a certificate of its own, trusted by nobody) and reads what is sent —
the Bearer API key and the new password. Before the fix a pin plus a proxy turned TLS verification off
and the proxy read everything. Now the pin is checked on the TLS session inside the CONNECT tunnel, so
the intercepting proxy's handshake is refused and not one request byte reaches it.

The intercepting proxy is the lab's own (`keyturn.sim.meraki_proxy`, a real CONNECT proxy over real
sockets); behind it, a recorder stands in for whoever the attacker forwards the decrypted bytes to.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme

from keyturn.errors import TlsVerificationFailed
from keyturn.secret import Secret
from keyturn.sim.meraki import MerakiFrontend
from keyturn.sim.meraki_proxy import MerakiProxy
from keyturn.sim.meraki_state import MerakiState
from keyturn.sim.tls import SimCA
from keyturn.targets.base import Account, AdminCredential, Endpoint
from keyturn.targets.meraki import MerakiAuthUserTarget

EMAIL = "mitm.victim@example.com"
OLD, NEW = "0ld-Passw0rd!", "N3w-Passw0rd!"


@dataclass
class Recorder:
    """A TCP server that keeps every byte it is sent (the attacker's end of the interception)."""

    received: bytearray = field(default_factory=bytearray)
    server: asyncio.Server | None = None

    async def start(self) -> int:
        async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                self.received += data
            writer.close()

        self.server = await asyncio.start_server(keep, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class World:
    state: MerakiState
    org: str
    net: str
    key: str


@pytest.fixture
def world() -> World:
    state = MerakiState(seed=12)
    org = state.add_org("MITM Org")
    net = state.add_network(org.id, "MITM Net")
    state.add_auth_user(net.id, EMAIL, OLD)
    return World(state, org.id, net.id, state.add_api_key())


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    yield rec
    await rec.stop()


async def tunnel_fingerprint(proxy_port: int, host: str = "api.meraki.com") -> str:
    """SHA-256 of the certificate presented inside a CONNECT tunnel through the proxy."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    await writer.drain()
    assert b" 200 " in await reader.readuntil(b"\r\n\r\n")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    await writer.start_tls(ctx, server_hostname=host)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return hashlib.sha256(der).hexdigest()


def meraki_pin() -> str:
    """A pin for 'the real api.meraki.com': any certificate that is not the proxy's."""
    leaf = trustme.CA().issue_cert("api.meraki.com")
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return hashlib.sha256(der).hexdigest()


def account(world: World, **endpoint: Any) -> Account:
    ep = Endpoint(host="api.meraki.com", network_id=world.net, org_id=world.org, **endpoint)
    return Account(record_uid="rec-mitm", username=EMAIL, endpoint=ep,
                   admin=AdminCredential("api", Secret(world.key)))


async def test_intercepting_proxy_with_another_certificate_gets_no_key(world: World,
                                                                       recorder: Recorder) -> None:
    proxy = MerakiProxy(await recorder.start(), SimCA.create())
    proxy_port = await proxy.start("127.0.0.1", 0)
    target = MerakiAuthUserTarget()
    try:
        acct = account(world, fingerprint=meraki_pin(), options={"proxy": f"http://127.0.0.1:{proxy_port}"})
        with pytest.raises(TlsVerificationFailed, match="pinned fingerprint"):
            await target.change(acct, Secret(OLD), Secret(NEW))
    finally:
        await target.aclose()
        await proxy.stop()
    assert world.key.encode() not in recorder.received
    assert NEW.encode() not in recorder.received
    assert recorder.received == b"", "not one request byte may pass an unverified TLS session"


async def test_pin_of_the_certificate_inside_the_tunnel_is_what_counts(world: World) -> None:
    """The control: pinning what the origin presents through the tunnel works (the lab's case), so the
    refusal above is the pin check and not a proxy that never works."""
    frontend = MerakiFrontend(world.state)
    proxy = MerakiProxy(await frontend.start("127.0.0.1", 0), SimCA.create())
    proxy_port = await proxy.start("127.0.0.1", 0)
    target = MerakiAuthUserTarget()
    try:
        pin = await tunnel_fingerprint(proxy_port)
        acct = account(world, fingerprint=pin, options={"proxy": f"http://127.0.0.1:{proxy_port}"})
        await target.change(acct, Secret(OLD), Secret(NEW))
        assert world.state.verify_login(world.net, EMAIL, NEW)
    finally:
        await target.aclose()
        await proxy.stop()
        await frontend.stop()


async def test_every_new_tunnel_is_checked(world: World, recorder: Recorder) -> None:
    """Every new tunnel is checked, not only the first: a second connection gets the same scrutiny."""
    proxy = MerakiProxy(await recorder.start(), SimCA.create())
    proxy_port = await proxy.start("127.0.0.1", 0)
    target = MerakiAuthUserTarget()
    try:
        acct = account(world, fingerprint=meraki_pin(), options={"proxy": f"http://127.0.0.1:{proxy_port}"})
        for _ in range(2):
            with pytest.raises(TlsVerificationFailed):
                await target.change(acct, Secret(OLD), Secret(NEW))
    finally:
        await target.aclose()
        await proxy.stop()
    assert recorder.received == b""
