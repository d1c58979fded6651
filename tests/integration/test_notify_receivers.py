"""Notifications to real receivers on 127.0.0.1: an aiosmtpd SMTP server that requires STARTTLS and AUTH
(certificate from a test CA), and an HTTPS Slack-style webhook receiver. A rotation that really failed
(the lab's device down) arrives exactly once on each, with no secret in either; a receiver that is down
gets every notification later, in order, none twice; `keyturn notify test|status` over the same servers."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from typer.testing import CliRunner

from keyturn.cli.main import app as cli
from keyturn.config import NotifyConfig, Settings
from keyturn.engine.outcome import Outcome
from keyturn.engine.rotate import RotationEngine, TargetPool
from keyturn.notify.dispatcher import Notifier
from keyturn.secret import Secret
from keyturn.sim.tls import SimCA
from keyturn.targets.registry import create_target
from keyturn.vault import Field, Vault
from tests.integration.engine_lab import add_iosxe
from tests.lab_fixtures import RunningLab, running_lab

SMTP_USER, SMTP_PASSWORD = "keyturn", "smtp-pw-Zq8rT1x"
HOOK_PATH = "/services/T0001/B0001/hookTokenX9y8"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    """What the SMTP server accepted: (envelope from, recipients, raw message, TLS?, authenticated user)."""

    mails: list[tuple[str, list[str], bytes, bool, str | None]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        user = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content),
                           session.ssl is not None, user))
        return "250 OK"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (SMTP_USER.encode(),
                                                                               SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


class Hook:
    """HTTPS Slack-style receiver; `stop()` closes the port (connection refused), `start()` reopens it."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx, self.port = ctx, free_port()
        self.bodies: list[bytes] = []
        self.runner: web.AppRunner | None = None

    async def receive(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(HOOK_PATH, self.receive)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ctx, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()
        self.runner = None


@dataclass
class World:
    lab: RunningLab
    vault: Vault
    settings: Settings
    mailbox: Mailbox
    hook: Hook
    uid: str
    device: str

    def engine(self) -> RotationEngine:
        pool = TargetPool(lambda kind: create_target(kind, timeout=2.0, save_timeout=5.0, retries=1,
                                                     backoff=0.0))
        return RotationEngine(self.vault, targets=pool, backoff=0.0)

    async def rotate(self) -> Any:
        engine = self.engine()
        try:
            return await engine.rotate(self.uid)
        finally:
            await engine.aclose()

    async def device_down(self, down: bool) -> None:
        async with self.lab.control() as ctl:
            await ctl.set_faults(self.device, {"down": down})

    def secrets(self) -> set[str]:
        """Every secret this test knows: each version of each vault field, the lab's passwords."""
        out = {SMTP_PASSWORD, HOOK_PATH.rsplit("/", 1)[1]}
        for record in self.vault.find():
            for f in record.fields:
                out |= {v.reveal() for v in f.value if isinstance(v, Secret)}
            for info in self.vault.versions(record.uid):
                out.add(self.vault.version_secret(record.uid, info.version).reveal())
        for dev in self.lab.state.iosxe:
            out |= {u.password for u in dev.users}
        return {s for s in out if len(s) >= 6}


@pytest.fixture
def ca() -> SimCA:
    return SimCA.create("notify test CA")


@pytest.fixture
def mail_server(ca: SimCA) -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port, tls_context=ca.server_context("127.0.0.1"),
                     require_starttls=True, auth_required=True, auth_require_tls=True,
                     authenticator=authenticate)
    ctl.start()
    try:
        yield box, port
    finally:
        ctl.stop()


@pytest.fixture
async def world(tmp_path: Path, ca: SimCA, mail_server: tuple[Mailbox, int]) -> AsyncIterator[World]:
    box, smtp_port = mail_server
    hook = Hook(ca.server_context("127.0.0.1"))
    await hook.start()
    ca_file = ca.write_ca(tmp_path / "ca.pem")
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1) as lab:
        settings = Settings(home=tmp_path / "home", notify=[
            NotifyConfig.model_validate({"name": "chat", "type": "slack", "url_record": "chat hook",
                                         "ca_bundle": str(ca_file)}),
            NotifyConfig.model_validate({"name": "noc-mail", "type": "email", "host": "127.0.0.1",
                                         "port": smtp_port, "from": "keyturn@example.test",
                                         "to": ["noc@example.test"], "username": SMTP_USER,
                                         "password_record": "smtp relay", "ca_bundle": str(ca_file)})])
        vault = Vault.init(settings)
        try:
            vault.add(type="login", title="chat hook", fields=[
                Field("password", None, [Secret(f"https://127.0.0.1:{hook.port}{HOOK_PATH}")])])
            vault.add(type="login", title="smtp relay",
                      fields=[Field("password", None, [Secret(SMTP_PASSWORD)])])
            acct = add_iosxe(vault, lab.state, "iosxe-restconf", devices=1, users=1, admin=False)[0]
            assert acct.device is not None
            yield World(lab, vault, settings, box, hook, acct.uid, acct.device)
        finally:
            vault.close()
            if hook.runner is not None:
                await hook.stop()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def assert_no_secret(world: World, bodies: list[bytes]) -> None:
    secrets = world.secrets()
    assert len(secrets) >= 4
    for body in bodies:
        text = body.decode()
        leaked = [s for s in secrets if s in text]
        assert not leaked, "a notification carries a secret"


async def test_failed_rotation_arrives_once_by_mail_and_webhook_without_secrets(world: World) -> None:
    notifier = Notifier.from_settings(world.settings, world.vault)
    try:
        ok = await world.rotate()  # a successful rotation is not announced by the default outcomes
        assert ok.outcome is Outcome.ROTATED, ok.reason
        await world.device_down(True)
        failed = await world.rotate()
        assert failed.outcome is Outcome.FAILED
        assert await notifier.deliver_once() == 2
        assert await notifier.deliver_once() == 0  # nothing twice
    finally:
        await notifier.aclose()

    assert len(world.hook.bodies) == 1 and len(world.mailbox.mails) == 1
    text = json.loads(world.hook.bodies[0])["text"]
    for want in ("rotation failed", "device unreachable", str(failed.rotation_id), failed.title,
                 "iosxe-restconf"):
        assert want in text, want
    sender, rcpts, raw, tls, user = world.mailbox.mails[0]
    assert (sender, rcpts, tls, user) == ("keyturn@example.test", ["noc@example.test"], True, SMTP_USER)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == f"keyturn: rotation failed: {failed.title}"
    body = msg.get_content()
    assert f"Rotation: {failed.rotation_id}" in body and "Outcome: failed" in body
    assert "Reason: device unreachable" in body
    assert_no_secret(world, [world.hook.bodies[0], raw])


async def test_receiver_down_spools_then_delivers_in_order_after_restart(world: World) -> None:
    clock = Clock()
    notifier = Notifier.from_settings(world.settings, world.vault, clock=clock)
    await world.hook.stop()
    await world.device_down(True)
    rotations = [(await world.rotate()).rotation_id for _ in range(3)]
    # the mail goes out; the webhook's three stay spooled
    assert await notifier.deliver_once() == 3
    chat = next(s for s in notifier.status() if s.name == "chat")
    assert (chat.spooled, chat.failures) == (3, 1) and "ConnectError" in (chat.last_error or "")
    assert HOOK_PATH not in (chat.last_error or "")
    await notifier.aclose()  # keyturn serve stops; the spool is on disk

    rotations.append((await world.rotate()).rotation_id)  # one more while nothing runs
    await world.hook.start()
    notifier = Notifier.from_settings(world.settings, world.vault, clock=clock)
    try:
        assert await notifier.deliver_once() == 5  # 4 to the webhook, the 4th mail
        assert await notifier.deliver_once() == 0
    finally:
        await notifier.aclose()
    got = [json.loads(b)["text"] for b in world.hook.bodies]
    assert len(got) == 4 and all(rid in text for rid, text in zip(rotations, got, strict=True))
    mails = [email.message_from_bytes(m[2], policy=email.policy.default) for m in world.mailbox.mails]
    assert all(f"Rotation: {rid}" in m.get_content() for m, rid in zip(mails, rotations, strict=True))
    assert_no_secret(world, world.hook.bodies + [m[2] for m in world.mailbox.mails])


async def test_cli_notify_test_and_status(world: World) -> None:
    home = world.settings.home
    toml = "\n".join([
        "[[keyturn.notify]]", 'name = "chat"', 'type = "slack"', 'url_record = "chat hook"',
        f'ca_bundle = "{world.settings.notify[0].ca_bundle}"', "",
        "[[keyturn.notify]]", 'name = "noc-mail"', 'type = "email"', 'host = "127.0.0.1"',
        f"port = {world.settings.notify[1].port}", 'from = "keyturn@example.test"',
        'to = ["noc@example.test"]',
        f'username = "{SMTP_USER}"', 'password_record = "smtp relay"',
        f'ca_bundle = "{world.settings.notify[1].ca_bundle}"', ""])
    (home / "keyturn.toml").write_text(toml)
    env = {"KEYTURN_HOME": str(home), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None, "KEYTURN_CONFIG": None,
           "KEYTURN_NOTIFY": None}
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, list(args), env=env)

    res = await asyncio.to_thread(run, "notify", "test", "noc-mail")
    assert res.exit_code == 0, res.output
    assert res.output == "sent a test notification through noc-mail (smtp://127.0.0.1:" \
                         f"{world.settings.notify[1].port} → noc@example.test)\n"
    assert len(world.mailbox.mails) == 1 and b"test notification" in world.mailbox.mails[0][2]
    res = await asyncio.to_thread(run, "notify", "test", "chat")
    assert res.exit_code == 0, res.output
    assert HOOK_PATH not in res.output and len(world.hook.bodies) == 1
    res = await asyncio.to_thread(run, "notify", "test", "pager")
    assert res.exit_code == 2 and "no notify rule named 'pager' (known: chat, noc-mail)" in res.stderr

    await world.hook.stop()
    res = await asyncio.to_thread(run, "notify", "test", "chat")
    assert res.exit_code == 1 and res.stdout == ""
    assert "notify chat: https://127.0.0.1:" in res.stderr and "ConnectError" in res.stderr
    assert HOOK_PATH not in res.stderr
    await world.device_down(True)
    await world.rotate()
    res = await asyncio.to_thread(run, "notify", "status", "--deliver", "--json")
    assert res.exit_code == 1, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert (rows["chat"]["spooled"], rows["chat"]["failures"]) == (1, 1)
    assert (rows["noc-mail"]["spooled"], rows["noc-mail"]["delivered"]) == (0, 1)
    assert HOOK_PATH not in res.output
