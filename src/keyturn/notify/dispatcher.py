"""The notifier: the audit dispatcher's delivery loop, fed only the rotations a rule asks for.

`Notifier` is `keyturn.audit.sinks.dispatcher.Dispatcher` with another *take* step; sending, back-off,
in-order retry and status are the audit sinks' own (one retry loop in one module). Per rule:

1. **take** — read audit entries after the rule's durable cursor, keep the rotation-ending ones
   (`message.ACTIONS`) whose outcome, record tags and site the rule matches, render them with the
   record's title, and spool them; the cursor moves past every entry read, matched or not, in the same
   transaction (`NotifySpool.take_through`). A full spool stops the cursor at the last entry it took,
   so later ones wait in the audit table: an outage of any length loses nothing.
2. **send** — the oldest spooled batch, in order; what the target did not take stays spooled and is
   retried with exponential back-off, before anything newer.

Each rotation is therefore sent once per rule (at-least-once across a crash between a send and its
acknowledgement; the audit id is in every message for de-duplication). A rule seen for the first time
starts at the current end of the audit log: adding a rule does not replay past failures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from keyturn.audit.sinks.buffer import Spool
from keyturn.audit.sinks.dispatcher import TAKE_PAGE, Dispatcher, Route
from keyturn.errors import ConfigError, VaultError
from keyturn.notify.base import Channel
from keyturn.notify.message import MetaReader, Notification, RecordInfo, Rule, describe
from keyturn.secret import Secret

if TYPE_CHECKING:
    from keyturn.config import NotifyConfig, Settings
    from keyturn.vault import Vault
    from keyturn.vault.storage import Storage


class NotifySpool(Spool):
    """A `Spool` whose cursor may move past audit entries that were read but not spooled."""

    def take_through(self, entries: Sequence[tuple[int, bytes]], through: int) -> int:
        """Spool `entries` (ascending audit ids, all after the cursor and <= `through`) and move the
        cursor to `through` when all fit, else to the last one that fit. Returns the new cursor."""

        return self._take(entries, through=through)[1]

    def start_at(self, audit_id: int) -> bool:
        """A new spool's cursor starts at `audit_id`; an existing one keeps its own. True if set."""

        def run() -> bool:
            self._tx()
            fresh = self._get("cursor") is None
            if fresh:
                self._set("cursor", str(audit_id))
            self._db.execute("COMMIT")
            return fresh

        return self._run(run)


@dataclass
class NotifyRoute(Route):
    """A rule's channel (also its `sink`), its filter and its spool (a `NotifySpool`)."""

    rule: Rule = field(kw_only=True)
    channel: Channel = field(kw_only=True)

    @property
    def notify_spool(self) -> NotifySpool:
        assert isinstance(self.spool, NotifySpool)
        return self.spool


def build_channel(cfg: NotifyConfig, vault: Vault) -> Channel:
    """The channel of a `[[keyturn.notify]]` table; the webhook URL / SMTP password are read from the
    vault records the table names (their password field)."""
    from keyturn.notify.slack import SlackChannel
    from keyturn.notify.smtp import EmailChannel

    def secret(record: str, what: str) -> Secret:
        try:
            value = vault.secret(vault.resolve(record))
        except VaultError as exc:
            raise ConfigError(f"notify {cfg.name}: {what} {record!r}: {exc}") from exc
        if value is None or not value.reveal():
            raise ConfigError(f"notify {cfg.name}: {what} {record!r} has no password")
        return value

    if cfg.type == "slack":
        assert cfg.url_record is not None  # enforced by NotifyConfig
        return SlackChannel(cfg.name, secret(cfg.url_record, "url_record"), ca_bundle=cfg.ca_bundle,
                            timeout=cfg.timeout)
    assert cfg.host is not None and cfg.sender is not None
    password = secret(cfg.password_record, "password_record") if cfg.password_record else None
    return EmailChannel(cfg.name, cfg.host, port=cfg.port, sender=cfg.sender, to=cfg.to,
                        starttls=cfg.starttls, username=cfg.username, password=password,
                        ca_bundle=cfg.ca_bundle, timeout=cfg.timeout)


class Notifier(Dispatcher):
    """Delivers matching rotation outcomes to every configured channel (see the module docstring)."""

    def __init__(
        self, storage: Storage, records: MetaReader, routes: Sequence[NotifyRoute], *,
        clock: Callable[[], float] = time.monotonic, poll_interval: float = 1.0,
        backoff_base: float = 1.0, backoff_cap: float = 300.0,
    ) -> None:
        names = [r.channel.name for r in routes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"notify rule names must be unique: {', '.join(dup)}")
        super().__init__(storage, routes, clock=clock, poll_interval=poll_interval,
                         backoff_base=backoff_base, backoff_cap=backoff_cap)
        self._records = records
        head = self._head()
        for r in routes:
            r.notify_spool.start_at(head)

    @classmethod
    def from_settings(
        cls, settings: Settings, vault: Vault, *, clock: Callable[[], float] = time.monotonic,
        poll_interval: float = 1.0,
    ) -> Notifier:
        """Every `[[keyturn.notify]]` rule of `settings`, spooled under KEYTURN_HOME/spool/."""
        routes: list[NotifyRoute] = []
        try:
            for cfg in settings.notify:
                spool = NotifySpool(settings.home / "spool" / f"notify-{cfg.name}.sqlite",
                                    capacity=cfg.spool_max)
                try:
                    channel = build_channel(cfg, vault)
                except BaseException:
                    spool.close()
                    raise
                routes.append(NotifyRoute(channel, spool, batch_size=cfg.batch_size, fmt=cfg.type,
                                          rule=Rule.from_config(cfg), channel=channel))
            return cls(vault.storage, vault, routes, clock=clock, poll_interval=poll_interval)
        except BaseException:
            for r in routes:
                r.spool.close()
            raise

    def route(self, name: str) -> NotifyRoute:
        for r in self.routes:
            if isinstance(r, NotifyRoute) and r.channel.name == name:
                return r
        known = ", ".join(r.sink.name for r in self.routes) or "none configured"
        raise ConfigError(f"no notify rule named {name!r} (known: {known})")

    def _messages(self, route: NotifyRoute, events: Sequence[Notification | None],
                  ) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        for n in events:
            if n is not None and route.rule.matches(n):
                out.append((n.audit_id, route.channel.message(n)))
        return out

    def _notifications(self, after: int, limit: int) -> tuple[list[Notification | None], int]:
        """Rotation outcomes after audit id `after` (None for other entries) and the last id read."""
        events = self._read(after, limit)
        infos: dict[str, RecordInfo] = {}
        out: list[Notification | None] = []
        for e in events:
            n = Notification.from_event(e)
            if n is not None and e.record_uid is not None:
                if e.record_uid not in infos:
                    infos[e.record_uid] = describe(self._records, e.record_uid)
                n = Notification.from_event(e, infos[e.record_uid])
            out.append(n)
        return out, (events[-1].id if events else after)

    async def _take(self, route: Route) -> int:
        assert isinstance(route, NotifyRoute)
        if await asyncio.to_thread(route.spool.free) == 0:
            return 0
        cursor = await asyncio.to_thread(lambda: route.spool.cursor)
        notes, last = await asyncio.to_thread(self._notifications, cursor, TAKE_PAGE)
        if last == cursor:
            return 0
        moved = await asyncio.to_thread(route.notify_spool.take_through, self._messages(route, notes), last)
        return moved - cursor  # entries consumed: the delivery loop reads on while this is > 0

    async def send_test(self, name: str, n: Notification) -> None:
        """Send `n` through rule `name` now, outside the spool (`keyturn notify test`)."""
        route = self.route(name)
        await route.channel.send([route.channel.message(n)])

