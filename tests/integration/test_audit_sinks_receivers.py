"""Real receivers on 127.0.0.1 (syslog UDP / TCP / TLS, HTTPS webhook checking the HMAC) get every
audit event, including those appended while they were down: in order, none twice."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from keyturn.audit.sinks.dispatcher import Dispatcher
from keyturn.config import AuditSinkConfig, Settings
from keyturn.secret import Secret
from keyturn.sim.tls import SimCA
from keyturn.vault import Field, Vault

HOOK_KEY = "hook-key-0123456789"
RFC5424 = re.compile(r'^<(\d+)>1 \S+ \S+ keyturn \d+ (\S+) \[keyturn@32473 id="(\d+)"[^\]]*\] (.*)$', re.S)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Received:
    """Messages a receiver got; `wait(n)` polls (no fixed sleeps) until n arrived."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def add_syslog(self, raw: bytes) -> None:
        m = RFC5424.match(raw.decode())
        assert m, raw
        assert json.loads(m.group(4))["id"] == int(m.group(3))
        self.ids.append(int(m.group(3)))

    async def wait(self, n: int) -> None:
        async with asyncio.timeout(10):
            while len(self.ids) < n:
                await asyncio.sleep(0.005)


class UdpReceiver:
    def __init__(self, got: Received) -> None:
        self.got, self.port, self.transport = got, 0, None

    async def start(self) -> None:
        got = self.got

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                got.add_syslog(data)

        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", self.port))
        self.port = self.transport.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        assert self.transport is not None
        self.transport.close()


class StreamReceiver:
    """RFC 6587 octet-counting receiver, plain TCP or TLS (RFC 5425)."""

    def __init__(self, got: Received, ssl_ctx: ssl.SSLContext | None) -> None:
        self.got, self.ssl, self.port, self.server = got, ssl_ctx, 0, None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    length = int((await reader.readuntil(b" "))[:-1])
                except asyncio.IncompleteReadError as exc:
                    assert exc.partial == b""
                    break
                self.got.add_syslog(await reader.readexactly(length))
        finally:
            writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


class WebhookReceiver:
    def __init__(self, got: Received, ssl_ctx: ssl.SSLContext) -> None:
        self.got, self.ssl, self.port = got, ssl_ctx, 0
        self.runner: web.AppRunner | None = None
        self.bad_signatures = 0

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers["X-Keyturn-Timestamp"]
        want = "sha256=" + hmac.new(HOOK_KEY.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Keyturn-Signature", ""), want):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.got.ids.extend(e["id"] for e in json.loads(body)["events"])
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/audit", self._hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ssl)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
def ca() -> SimCA:
    return SimCA.create()


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    with Vault.init(Settings(home=tmp_path)) as v:
        v.add(type="login", title="siem hook key", fields=[Field("password", None, [Secret(HOOK_KEY)])])
        yield v


def all_ids(v: Vault) -> list[int]:
    return [e.id for e in reversed(v.audit.list())]


@pytest.fixture(params=["udp", "tcp", "tls", "webhook"])
async def setup(request: pytest.FixtureRequest, ca: SimCA, vault: Vault, tmp_path: Path
                ) -> AsyncIterator[tuple[Any, AuditSinkConfig, Received]]:
    got = Received()
    kind = request.param
    server_ctx = ca.server_context("127.0.0.1")
    receiver: Any
    if kind == "udp":
        receiver = UdpReceiver(got)
    elif kind in ("tcp", "tls"):
        receiver = StreamReceiver(got, server_ctx if kind == "tls" else None)
    else:
        receiver = WebhookReceiver(got, server_ctx)
    await receiver.start()
    bundle = ca.write_ca(tmp_path / "ca.pem")
    if kind == "webhook":
        cfg = AuditSinkConfig(name="hook", type="webhook", url=f"https://127.0.0.1:{receiver.port}/audit",
                              hmac_record="siem hook key", ca_bundle=bundle, batch_size=7)
    else:
        cfg = AuditSinkConfig(name=f"syslog-{kind}", type="syslog", host="127.0.0.1", port=receiver.port,
                              protocol=kind, ca_bundle=bundle, batch_size=7)
    yield receiver, cfg, got
    await receiver.stop()


async def test_receiver_gets_every_event_including_those_while_down(
    setup: tuple[Any, AuditSinkConfig, Received], vault: Vault,
) -> None:
    receiver, cfg, got = setup
    clock = Clock()
    d = Dispatcher.from_settings(vault.settings.model_copy(update={"audit_sinks": [cfg]}), vault, clock=clock)
    try:
        before = all_ids(vault)
        assert await d.deliver_once() == len(before)
        await got.wait(len(before))

        await receiver.stop()
        for i in range(25):
            vault.audit.append("test.while_down", actor="tester", details={"n": i, "note": "a|b=c\\d"})
        assert await d.deliver_once() == 0
        st = d.status()[0]
        assert st.spooled == 25 and st.failures == 1 and st.last_error
        assert "127.0.0.1" in st.last_error and HOOK_KEY not in st.last_error

        await receiver.start()  # same port
        for i in range(3):
            vault.audit.append("test.after_restart", actor="tester", details={"n": i})
        clock.t += d.backoff(1)
        assert await d.deliver_once() == 28
        want = all_ids(vault)
        await got.wait(len(want))
        assert got.ids == want  # in order, none twice, none missing
        st = d.status()[0]
        assert (st.spooled, st.backlog, st.failures, st.delivered) == (0, 0, 0, len(want))
        if isinstance(receiver, WebhookReceiver):
            assert receiver.bad_signatures == 0
    finally:
        await d.aclose()


async def test_tls_syslog_refuses_an_untrusted_receiver(vault: Vault, tmp_path: Path) -> None:
    trusted, rogue = SimCA.create(), SimCA.create()
    got = Received()
    receiver = StreamReceiver(got, rogue.server_context("127.0.0.1"))
    await receiver.start()
    cfg = AuditSinkConfig(name="tls", type="syslog", host="127.0.0.1", port=receiver.port, protocol="tls",
                          ca_bundle=trusted.write_ca(tmp_path / "ca.pem"))
    d = Dispatcher.from_settings(vault.settings.model_copy(update={"audit_sinks": [cfg]}), vault)
    try:
        assert await d.deliver_once() == 0
        st = d.status()[0]
        assert "CERTIFICATE_VERIFY_FAILED" in (st.last_error or "") and st.spooled == len(all_ids(vault))
        assert got.ids == []
    finally:
        await d.aclose()
        await receiver.stop()
