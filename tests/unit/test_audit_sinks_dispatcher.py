"""Dispatcher over a real vault's audit chain with in-memory fake sinks, a fake clock, and the webhook
sink through httpx.MockTransport (HMAC checked)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from keyturn.audit.sinks.base import AuditEvent
from keyturn.audit.sinks.buffer import Spool
from keyturn.audit.sinks.dispatcher import Dispatcher, Route
from keyturn.audit.sinks.webhook import WebhookSink
from keyturn.config import AuditSinkConfig, Settings
from keyturn.errors import AuditSinkUnavailable, ConfigError
from keyturn.secret import Secret
from keyturn.vault import Field, Vault


class FakeSink:
    kind: ClassVar[str] = "fake"

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.got: list[bytes] = []
        self.down = False
        self.accept_only: int | None = None  # take this many, then fail
        self.calls = 0

    @property
    def destination(self) -> str:
        return "memory"

    def render(self, event: AuditEvent) -> bytes:
        return str(event.id).encode()

    async def send(self, messages: Sequence[bytes]) -> None:
        self.calls += 1
        if self.down:
            raise AuditSinkUnavailable("fake is down")
        if self.accept_only is not None and self.accept_only < len(messages):
            self.got.extend(messages[: self.accept_only])
            raise AuditSinkUnavailable("fake broke mid-batch", delivered=self.accept_only)
        self.got.extend(messages)

    async def aclose(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    with Vault.init(Settings(home=tmp_path)) as v:
        yield v


def ids(v: Vault) -> list[bytes]:
    return [str(e.id).encode() for e in reversed(v.audit.list())]


def append(v: Vault, n: int) -> None:
    for i in range(n):
        v.audit.append("test.event", actor="tester", details={"n": i})


async def test_outage_spools_backs_off_and_delivers_all_in_order_once(vault: Vault, tmp_path: Path) -> None:
    sink, clock = FakeSink(), Clock()
    d = Dispatcher(vault.storage, [Route(sink, Spool(tmp_path / "sp" / "f.sqlite", capacity=1000),
                                         batch_size=7)], clock=clock, backoff_base=2, backoff_cap=30)
    assert await d.deliver_once() == len(ids(vault))
    sink.down = True
    append(vault, 25)
    assert await d.deliver_once() == 0
    st = d.status()[0]
    assert (st.spooled, st.failures, st.backlog) == (25, 1, 25)
    calls = sink.calls
    append(vault, 5)
    assert await d.deliver_once() == 0  # backing off: no send attempted
    assert sink.calls == calls
    clock.t += 2
    assert await d.deliver_once() == 0
    assert d.status()[0].failures == 2 and d.routes[0].next_attempt == clock.t + 4  # 2 * 2**1
    sink.down = False
    clock.t += 4
    assert await d.deliver_once() == 30
    assert sink.got == ids(vault)  # every entry, in id order, none twice
    st = d.status()[0]
    assert (st.spooled, st.backlog, st.failures, st.last_error) == (0, 0, 0, None)


async def test_partial_batch_keeps_only_the_rest(vault: Vault, tmp_path: Path) -> None:
    sink, clock = FakeSink(), Clock()
    d = Dispatcher(vault.storage, [Route(sink, Spool(tmp_path / "f.sqlite", capacity=100), batch_size=10)],
                   clock=clock)
    append(vault, 8)
    sink.accept_only = 3
    assert await d.deliver_once() == 3
    assert d.status()[0].spooled == len(ids(vault)) - 3
    sink.accept_only = None
    clock.t += 10
    await d.deliver_once()
    assert sink.got == ids(vault)


async def test_small_spool_never_loses_entries(vault: Vault, tmp_path: Path) -> None:
    sink, clock = FakeSink(), Clock()
    sink.down = True
    d = Dispatcher(vault.storage, [Route(sink, Spool(tmp_path / "f.sqlite", capacity=4), batch_size=3)],
                   clock=clock)
    append(vault, 40)
    await d.deliver_once()
    st = d.status()[0]
    assert (st.spooled, st.drops, st.backlog) == (4, 0, len(ids(vault)))
    sink.down = False
    clock.t += 1000
    await d.deliver_once()
    assert sink.got == ids(vault)


async def test_spool_cursor_survives_restart(vault: Vault, tmp_path: Path) -> None:
    first = FakeSink()
    d = Dispatcher(vault.storage, [Route(first, Spool(tmp_path / "f.sqlite", capacity=100))])
    await d.deliver_once()
    await d.aclose()
    append(vault, 3)
    second = FakeSink()
    d2 = Dispatcher(vault.storage, [Route(second, Spool(tmp_path / "f.sqlite", capacity=100))])
    assert await d2.deliver_once() == 3
    assert first.got + second.got == ids(vault)
    await d2.aclose()


async def test_one_dead_sink_does_not_hold_up_another(vault: Vault, tmp_path: Path) -> None:
    dead, live = FakeSink("dead"), FakeSink("live")
    dead.down = True
    d = Dispatcher(vault.storage, [Route(dead, Spool(tmp_path / "a.sqlite", capacity=100)),
                                   Route(live, Spool(tmp_path / "b.sqlite", capacity=100))])
    assert await d.deliver_once() == len(ids(vault))
    assert live.got == ids(vault) and dead.got == []


async def test_run_delivers_until_stopped(vault: Vault, tmp_path: Path) -> None:
    sink = FakeSink()
    d = Dispatcher(vault.storage, [Route(sink, Spool(tmp_path / "f.sqlite", capacity=100))],
                   poll_interval=60)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    append(vault, 2)
    d.notify()
    async with asyncio.timeout(10):
        while len(sink.got) < len(ids(vault)):
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert sink.got == ids(vault)


def test_duplicate_sink_names_refused(vault: Vault, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unique: x"):
        Dispatcher(vault.storage, [Route(FakeSink("x"), Spool(tmp_path / "a.sqlite", capacity=1)),
                                   Route(FakeSink("x"), Spool(tmp_path / "b.sqlite", capacity=1))])


async def test_webhook_signs_body_with_vault_key_and_keeps_batch_on_401(vault: Vault, tmp_path: Path) -> None:
    key = "k3y-from-the-vault"
    vault.add(type="login", title="siem hook key", fields=[Field("password", None, [Secret(key)])])
    received: list[dict[str, object]] = []
    status = {"code": 401}

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.content
        ts = request.headers["X-Keyturn-Timestamp"]
        want = "sha256=" + hmac.new(key.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["X-Keyturn-Signature"], want)
        assert ts == "1700000000"
        if status["code"] != 200:
            return httpx.Response(status["code"])
        received.extend(json.loads(body)["events"])
        return httpx.Response(200)

    cfg = AuditSinkConfig(name="hook", type="webhook", url="https://siem.example/in",
                          hmac_record="siem hook key")
    settings = vault.settings.model_copy(update={"audit_sinks": [cfg]})
    d = Dispatcher.from_settings(settings, vault, clock=Clock())
    # Same sink, but through MockTransport (the config path above resolved the key from the vault).
    built = d.routes[0].sink
    assert isinstance(built, WebhookSink) and built.destination == "https://siem.example:443/in"
    await built.aclose()
    d.routes[0].sink = WebhookSink("hook", "https://siem.example/in", Secret(key), now=lambda: 1700000000,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    assert await d.deliver_once() == 0
    st = d.status()[0]
    assert st.last_error == "audit sink hook: https://siem.example:443/in answered HTTP 401"
    assert key not in (st.last_error or "")
    status["code"] = 200
    d.routes[0].next_attempt = 0
    n = await d.deliver_once()
    entries = list(reversed(vault.audit.list()))
    assert n == len(entries) and [e["id"] for e in received] == [e.id for e in entries]
    assert received[-1]["hash"] == entries[-1].hash and received[-1]["action"] == entries[-1].action
    assert received[0]["prev_hash"] == "0" * 64
    await d.aclose()


def test_webhook_without_key_record_is_a_config_error(vault: Vault) -> None:
    cfg = AuditSinkConfig(name="hook", type="webhook", url="https://siem.example/in", hmac_record="nope")
    settings = vault.settings.model_copy(update={"audit_sinks": [cfg]})
    with pytest.raises(ConfigError, match="audit sink hook: hmac_record 'nope'"):
        Dispatcher.from_settings(settings, vault)
