"""What a notification says, and which rule wants it.

A `Notification` is one finished rotation as the audit table recorded it (`rotation.audit`, written by
the engine with the outcome, or `rotation.recover`, written when recovery settles an interrupted one),
plus what the record tells about itself without decrypting anything: its title, its site
(`keyturn.sites.site_of`) and its tags (``meta["tags"]`` of the user record and of its resource
record, `keyturn.tags`). Audit entries carry no secret by
construction and the record lookup reads metadata only, so nothing a notification holds can be one.

A `Rule` (one `[[keyturn.notify]]` table) matches a notification when its outcome is one of the rule's
`outcomes` and, when the rule names any, one of its `tags` and one of its `sites`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from keyturn.audit.sinks.base import AuditEvent
from keyturn.errors import KeyturnError
from keyturn.sites import DEFAULT_SITE, resource_of, site_from_metas
from keyturn.tags import tags_of

if TYPE_CHECKING:
    from keyturn.config import NotifyConfig
    from keyturn.vault.api import RecordSummary

ACTIONS = ("rotation.audit", "rotation.recover")  # audit actions that end a rotation with an outcome
_FIELD_MAX = 500  # a reason longer than this is cut: a chat line, not a log


@dataclass(frozen=True)
class Notification:
    audit_id: int
    time: datetime
    outcome: str
    reason: str
    rotation_id: str | None
    target: str | None
    record_uid: str | None
    title: str
    site: str = DEFAULT_SITE
    tags: tuple[str, ...] = ()
    actor: str = ""

    @classmethod
    def from_event(cls, event: AuditEvent, info: RecordInfo | None = None) -> Notification | None:
        """The notification for a rotation-ending audit entry; None for any other entry."""
        outcome = event.details.get("outcome")
        if event.action not in ACTIONS or not isinstance(outcome, str):
            return None
        rid = event.details.get("rotation_id")
        target = event.details.get("target")
        return cls(
            audit_id=event.id, time=event.ts, outcome=outcome, reason=str(event.details.get("reason", "")),
            rotation_id=str(rid) if rid is not None else None,
            target=str(target) if isinstance(target, str) else (info.target if info else None),
            record_uid=event.record_uid,
            title=info.title if info else (event.record_uid or "?"),
            site=info.site if info else DEFAULT_SITE, tags=info.tags if info else (), actor=event.actor,
        )

    def lines(self) -> list[tuple[str, str]]:
        """The facts as (label, value), in the order every channel shows them."""
        out = [("Record", f"{self.title} ({self.record_uid})" if self.record_uid else self.title),
               ("Target", self.target or "-"), ("Outcome", self.outcome),
               ("Reason", clip(self.reason) or "-"), ("Rotation", self.rotation_id or "-"),
               ("Time", self.time.isoformat(timespec="seconds")), ("Site", self.site)]
        if self.tags:
            out.append(("Tags", ", ".join(self.tags)))
        out.append(("Audit id", str(self.audit_id)))
        return out

    @property
    def subject(self) -> str:
        return one_line(f"keyturn: rotation {self.outcome.replace('_', ' ')}: {self.title}")

    def text(self) -> str:
        """Plain text: the subject line, then one `Label: value` line per fact."""
        return "\n".join([self.subject, "", *(f"{k}: {one_line(v)}" for k, v in self.lines())]) + "\n"


@dataclass(frozen=True)
class RecordInfo:
    title: str
    site: str = DEFAULT_SITE
    tags: tuple[str, ...] = ()
    target: str | None = None


class MetaReader(Protocol):
    """What `describe` needs from a vault (`keyturn.vault.Vault`); metadata only, nothing decrypted."""

    def summary(self, ref: str) -> RecordSummary: ...

    def meta(self, ref: str) -> tuple[str, dict[str, Any]]: ...


def describe(vault: MetaReader, uid: str) -> RecordInfo:
    """Title, site and tags of a user record (tags of its resource record too). A record that is gone
    or unreadable still gets its notification, under its uid, at the default site."""
    try:
        title = vault.summary(uid).title
    except KeyturnError:
        return RecordInfo(uid)
    try:
        _, meta = vault.meta(uid)
        resource = resource_of(meta)
        resource_meta: dict[str, Any] | None = None
        if resource is not None:
            try:
                _, resource_meta = vault.meta(resource)
            except KeyturnError:
                resource_meta = None
        tags = _unique([*tags_of(meta), *tags_of(resource_meta or {})])
        profile = meta.get("rotation")
        target = profile.get("target") if isinstance(profile, Mapping) else None
        return RecordInfo(title, site_from_metas(meta, resource_meta), tags,
                          target if isinstance(target, str) else None)
    except KeyturnError:
        return RecordInfo(title)


@dataclass(frozen=True)
class Rule:
    outcomes: frozenset[str]
    tags: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, cfg: NotifyConfig) -> Rule:
        return cls(frozenset(cfg.outcomes), frozenset(cfg.tags), frozenset(cfg.sites))

    def matches(self, n: Notification) -> bool:
        return (n.outcome in self.outcomes
                and (not self.tags or not self.tags.isdisjoint(n.tags))
                and (not self.sites or n.site in self.sites))


def one_line(value: str) -> str:
    """Control characters (CR, LF, tabs) as spaces: a title or reason cannot forge a header or a line."""
    return "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in value)


def clip(value: str, limit: int = _FIELD_MAX) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def slack_escape(value: str) -> str:
    """Slack mrkdwn control characters (&, <, >) escaped, so a title cannot ping @channel or link."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(n: Notification) -> dict[str, Any]:
    """The JSON body a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat) takes."""
    body = "\n".join(f"*{k}:* {slack_escape(one_line(v))}" for k, v in n.lines())
    return {"text": f"*{slack_escape(n.subject)}*\n{body}"}


def slack_message(n: Notification) -> bytes:
    return json.dumps(slack_payload(n), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def email_message(n: Notification, *, sender: str, to: Sequence[str], rule: str) -> bytes:
    """An RFC 5322 message (CRLF line ends, SMTP policy); the Message-ID names the audit id and the
    rule, so a mailbox can tell a re-sent copy (after a crash between send and acknowledgement)."""
    from email.message import EmailMessage
    from email.policy import SMTP
    from email.utils import format_datetime

    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = n.subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(n.time)
    domain = sender.rpartition("@")[2] or "keyturn.invalid"
    msg["Message-ID"] = f"<keyturn.{n.audit_id}.{rule}@{one_line(domain)}>"
    msg["X-Keyturn-Audit-Id"] = str(n.audit_id)
    msg.set_content(n.text())
    return msg.as_bytes()
