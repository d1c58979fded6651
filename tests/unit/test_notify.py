"""Notification rules over a real vault's audit chain: matching, rendering, and spool/retry order with
in-memory fake channels and a fake clock; the Slack channel through httpx.MockTransport."""

from __future__ import annotations

import email
import email.policy
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from keyturn.audit.sinks.base import AuditEvent
from keyturn.config import NotifyConfig, Settings
from keyturn.errors import ConfigError, NotificationUnavailable
from keyturn.notify.dispatcher import Notifier, NotifyRoute, NotifySpool
from keyturn.notify.message import Notification, Rule, email_message, slack_payload
from keyturn.notify.slack import SlackChannel
from keyturn.secret import Secret
from keyturn.vault import Field, Vault

HOOK = "https://hooks.example.test/services/T000/B000/sEcReTtOkEn"


class FakeChannel:
    kind: ClassVar[str] = "fake"

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[bytes] = []
        self.down = False
        self.calls = 0

    @property
    def destination(self) -> str:
        return "memory"

    def message(self, n: Notification) -> bytes:
        return f"{n.audit_id}:{n.outcome}:{n.title}".encode()

    def render(self, event: AuditEvent) -> bytes:
        n = Notification.from_event(event)
        assert n is not None
        return self.message(n)

    async def send(self, messages: Sequence[bytes]) -> None:
        self.calls += 1
        if self.down:
            raise NotificationUnavailable("fake is down")
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
    with Vault.init(Settings(home=tmp_path, sites=["dc-east"])) as v:
        yield v


def user(vault: Vault, title: str, *, tags: list[str] | None = None, site: str | None = None) -> str:
    fields = [Field("login", None, ["admin"]), Field("password", None, [Secret("pw-" + title)])]
    uid = vault.add(type="pamUser", title=title, fields=fields).uid
    if tags:
        vault.set_meta(uid, "tags", tags)
    if site:
        vault.set_meta(uid, "rotation", {"options": {"site": site}})
    return uid


def finish(vault: Vault, uid: str, outcome: str, reason: str = "device unreachable") -> int:
    vault.audit.append("rotation.audit", actor="engine", record_uid=uid,
                       details={"rotation_id": f"r-{outcome}", "target": "iosxe-ssh", "outcome": outcome,
                                "reason": reason})
    return vault.audit.list()[0].id


def notifier(vault: Vault, tmp_path: Path, rules: dict[str, Rule], *, clock: Clock | None = None,
             capacity: int = 100, batch: int = 10) -> tuple[Notifier, dict[str, FakeChannel]]:
    channels = {name: FakeChannel(name) for name in rules}
    routes = [NotifyRoute(ch, NotifySpool(tmp_path / "spool" / f"notify-{name}.sqlite", capacity=capacity),
                          batch_size=batch, rule=rules[name], channel=ch) for name, ch in channels.items()]
    return Notifier(vault.storage, vault, routes, clock=clock or Clock(), backoff_base=2), channels


DEFAULT = frozenset({"failed", "rolled_back", "needs_attention", "unverified", "rotated_script_errors"})


def note(**kw: object) -> Notification:
    base: dict[str, object] = dict(audit_id=7, time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                                   outcome="failed", reason="device unreachable", rotation_id="r1",
                                   target="iosxe-ssh", record_uid="u1", title="sw1 admin", site="default",
                                   tags=())
    base.update(kw)
    return Notification(**base)  # type: ignore[arg-type]


def test_rule_matches_outcome_tags_and_sites() -> None:
    rule = Rule(DEFAULT)
    assert rule.matches(note()) and not rule.matches(note(outcome="rotated"))
    tagged = Rule(DEFAULT, tags=frozenset({"backup", "core"}))
    assert tagged.matches(note(tags=("core",))) and not tagged.matches(note(tags=("edge",)))
    assert not tagged.matches(note())
    sited = Rule(frozenset({"needs_attention"}), sites=frozenset({"dc-east"}))
    assert sited.matches(note(outcome="needs_attention", site="dc-east"))
    assert not sited.matches(note(outcome="needs_attention")) and not sited.matches(note(site="dc-east"))


def test_only_rotation_endings_become_notifications() -> None:
    def event(action: str, details: dict[str, object]) -> AuditEvent:
        return AuditEvent(1, datetime.now(UTC), "engine", action, "u1", details, "p", "h")

    assert Notification.from_event(event("rotation.change", {"status": "failed"})) is None
    assert Notification.from_event(event("reveal", {"outcome": "failed"})) is None
    n = Notification.from_event(event("rotation.recover", {"rotation_id": "r9", "outcome": "needs_attention",
                                                           "reason": "both secrets refused"}))
    assert n is not None and (n.outcome, n.rotation_id, n.title) == ("needs_attention", "r9", "u1")


def test_messages_cannot_forge_headers_mentions_or_lines() -> None:
    n = note(title="sw1\r\nBcc: victim@example.test <!channel>", reason="a\nb")
    text = slack_payload(n)["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "\nb" not in text
    raw = email_message(n, sender="keyturn@example.test", to=["noc@example.test"], rule="mail")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None and "Bcc: victim" in str(msg["Subject"])
    assert msg["Message-ID"] == "<keyturn.7.mail@example.test>" and msg["X-Keyturn-Audit-Id"] == "7"
    body = msg.get_content()
    for want in ("Outcome: failed", "Reason: a b", "Rotation: r1", "Target: iosxe-ssh",
                 "Time: 2026-01-02T03:04:05+00:00", "Record: sw1  Bcc: victim"):
        assert want in body, want
    assert len(note(reason="x" * 5000).lines()[3][1]) == 500


async def test_rules_filter_by_outcome_tag_site_once_each_across_restart(vault: Vault, tmp_path: Path,
                                                                        ) -> None:
    backup = user(vault, "sw1 backup", tags=["backup"])
    east = user(vault, "sw2 east", site="dc-east")
    plain = user(vault, "sw3 plain")
    rules = {"all": Rule(DEFAULT), "backup": Rule(DEFAULT, tags=frozenset({"backup"})),
             "east": Rule(frozenset({"needs_attention"}), sites=frozenset({"dc-east"}))}
    n, ch = notifier(vault, tmp_path, rules)
    a = finish(vault, backup, "failed")
    finish(vault, plain, "rotated")
    vault.audit.append("rotation.change", actor="engine", record_uid=plain, details={"status": "failed"})
    b = finish(vault, east, "needs_attention")
    c = finish(vault, plain, "rolled_back")
    assert await n.deliver_once() == 5
    assert ch["all"].got == [f"{a}:failed:sw1 backup".encode(), f"{b}:needs_attention:sw2 east".encode(),
                             f"{c}:rolled_back:sw3 plain".encode()]
    assert ch["backup"].got == [f"{a}:failed:sw1 backup".encode()]
    assert ch["east"].got == [f"{b}:needs_attention:sw2 east".encode()]
    head = vault.audit.list()[0].id
    assert {s.name: (s.cursor, s.spooled, s.delivered) for s in n.status()} == {
        "all": (head, 0, 3), "backup": (head, 0, 1), "east": (head, 0, 1)}
    await n.aclose()

    n2, ch2 = notifier(vault, tmp_path, rules)  # a restart: the cursors are durable
    assert await n2.deliver_once() == 0 and ch2["all"].got == []
    d = finish(vault, backup, "unverified")
    assert await n2.deliver_once() == 2
    assert ch2["all"].got == ch2["backup"].got == [f"{d}:unverified:sw1 backup".encode()]
    await n2.aclose()


async def test_a_new_rule_does_not_replay_the_past(vault: Vault, tmp_path: Path) -> None:
    uid = user(vault, "sw1")
    finish(vault, uid, "failed")
    n, ch = notifier(vault, tmp_path, {"late": Rule(DEFAULT)})
    assert await n.deliver_once() == 0 and ch["late"].got == []
    new = finish(vault, uid, "failed")
    assert await n.deliver_once() == 1 and ch["late"].got == [f"{new}:failed:sw1".encode()]
    await n.aclose()


async def test_target_down_spools_backs_off_and_delivers_in_order(vault: Vault, tmp_path: Path) -> None:
    uid = user(vault, "sw1")
    clock = Clock()
    n, ch = notifier(vault, tmp_path, {"hook": Rule(DEFAULT)}, clock=clock, capacity=3, batch=2)
    hook = ch["hook"]
    hook.down = True
    ids = [finish(vault, uid, "failed", reason=f"attempt {i}") for i in range(7)]
    for i in range(10):  # rotations that succeed in between are read and skipped
        finish(vault, uid, "rotated", reason=f"ok {i}")
    assert await n.deliver_once() == 0
    st = n.status()[0]
    assert (st.spooled, st.failures, st.cursor) == (3, 1, ids[2])  # a full spool stops the cursor
    calls = hook.calls
    assert await n.deliver_once() == 0 and hook.calls == calls  # backing off: nothing attempted
    clock.t += 2
    assert await n.deliver_once() == 0 and n.status()[0].failures == 2
    assert n.routes[0].next_attempt == clock.t + 4
    hook.down = False
    clock.t += 4
    assert await n.deliver_once() == 7
    assert hook.got == [f"{i}:failed:sw1".encode() for i in ids]  # in order, none twice
    st = n.status()[0]
    assert (st.spooled, st.failures, st.last_error, st.cursor) == (0, 0, None, vault.audit.list()[0].id)
    await n.aclose()


def mock_slack(statuses: list[int], seen: list[bytes]) -> httpx.AsyncClient:
    def handle(req: httpx.Request) -> httpx.Response:
        seen.append(req.content)
        return httpx.Response(statuses.pop(0) if statuses else 200)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


async def test_slack_channel_reports_what_arrived_and_never_shows_the_url(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="httpx")  # httpx logs every request's URL at INFO
    seen: list[bytes] = []
    ch = SlackChannel("chat", Secret(HOOK), client=mock_slack([200, 503], seen))
    msgs = [ch.message(note(audit_id=i)) for i in (1, 2, 3)]
    with pytest.raises(NotificationUnavailable) as info:
        await ch.send(msgs)
    assert info.value.delivered == 1 and "503" in str(info.value)
    assert "sEcReTtOkEn" not in str(info.value) and "sEcReTtOkEn" not in ch.destination
    assert json.loads(seen[0])["text"].startswith("*keyturn: rotation failed: sw1 admin*")
    assert "HTTP Request: POST https://hooks.example.test:443/…" in caplog.text
    assert "sEcReTtOkEn" not in caplog.text

    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {req.url}")

    down = SlackChannel("chat", Secret(HOOK), client=httpx.AsyncClient(transport=httpx.MockTransport(refuse)))
    with pytest.raises(NotificationUnavailable) as info:
        await down.send(msgs)
    assert info.value.delivered == 0 and "sEcReTtOkEn" not in str(info.value)
    for bad in ("http://hooks.example.test/x/sEcReTtOkEn", "not a url sEcReTtOkEn"):
        with pytest.raises(ConfigError) as cfg_err:
            SlackChannel("chat", Secret(bad))
        assert "sEcReTtOkEn" not in str(cfg_err.value)


def test_config_keeps_secrets_in_the_vault(vault: Vault, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="url_record"):
        NotifyConfig.model_validate({"name": "chat", "type": "slack"})
    with pytest.raises(ValueError, match="starttls"):
        NotifyConfig.model_validate({"name": "m", "type": "email", "host": "h", "from": "a@b", "to": ["c@d"],
                                     "starttls": False, "username": "u", "password_record": "smtp"})
    with pytest.raises(ValueError, match="tag 'Core' is not valid"):
        NotifyConfig.model_validate({"name": "chat", "type": "slack", "url_record": "hook", "tags": ["Core"]})
    with pytest.raises(ValueError, match="extra"):
        NotifyConfig.model_validate({"name": "chat", "type": "slack", "url_record": "hook", "url": HOOK})
    vault.add(type="login", title="chat hook", fields=[Field("password", None, [Secret(HOOK)])])
    settings = Settings(home=tmp_path, notify=[
        NotifyConfig.model_validate({"name": "chat", "type": "slack", "url_record": "chat hook"}),
        NotifyConfig.model_validate({"name": "mail", "type": "email", "host": "127.0.0.1", "from": "k@x.test",
                                     "to": ["noc@x.test"], "tags": ["backup"]})])
    n = Notifier.from_settings(settings, vault)
    assert [(s.name, s.kind) for s in n.status()] == [("chat", "slack"), ("mail", "email")]
    assert n.status()[0].destination == "https://hooks.example.test:443/…"
    with pytest.raises(ConfigError, match="no notify rule named 'nope'"):
        n.route("nope")
    missing = Settings(home=tmp_path, notify=[NotifyConfig.model_validate(
        {"name": "x", "type": "slack", "url_record": "absent"})])
    with pytest.raises(ConfigError, match="url_record 'absent'"):
        Notifier.from_settings(missing, vault)
