"""The dispatcher: moves new audit entries into each sink's spool and delivers them, with back-off.

For each configured sink, one pass (`deliver_once`) repeats until nothing moves:

1. **take** — read audit entries after the sink's durable cursor (by id, ascending, at most the
   spool's free room), render them for the sink and spool them, advancing the cursor atomically;
2. **send** — unless the sink is backing off, send the oldest spooled batch; on success drop it from
   the spool; on `AuditSinkUnavailable` drop only the prefix that arrived, count the failure and back
   off exponentially (``base * 2**(failures-1)``, capped); the batch stays spooled for the next pass.

Sinks are served concurrently, so one slow or dead sink never delays another, and all disk work runs
in threads, so the event loop that also runs rotations is never blocked. Delivery is at-least-once
and in audit-id order per sink; every message carries the audit id for de-duplication, and the chain
head (id + keyed hash) as of when it was taken, so a SIEM can tell a truncated or rebuilt chain from
the entries and heads it already holds.

`keyturn serve` runs `run(stop)` as a task (and may call `notify()` after appending entries to skip
the poll wait); `keyturn audit sinks --deliver` runs one `deliver_once()` standalone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from keyturn.audit.sinks.base import AuditEvent, Sink
from keyturn.audit.sinks.buffer import Spool, SpoolStats
from keyturn.errors import AuditSinkUnavailable, ConfigError, KeyturnError, VaultError
from keyturn.vault.storage import AuditRow, Storage

if TYPE_CHECKING:
    from keyturn.config import AuditSinkConfig, Settings
    from keyturn.vault import Vault

log = logging.getLogger("keyturn.audit.sinks")

TAKE_PAGE = 1000  # audit rows read per query


@dataclass
class Route:
    """One sink with its spool and back-off state."""

    sink: Sink
    spool: Spool
    batch_size: int = 100
    fmt: str = "jsonl"
    next_attempt: float = 0.0  # dispatcher clock; 0 = send now


@dataclass(frozen=True)
class SinkStatus:
    name: str
    kind: str
    destination: str
    format: str
    cursor: int  # last audit id taken into the spool
    spooled: int  # rendered, waiting in the spool
    unread: int  # audit entries after the cursor, not yet spooled
    delivered: int
    drops: int
    failures: int  # consecutive
    last_error: str | None

    @property
    def backlog(self) -> int:
        """Audit entries not yet delivered to this sink."""
        return self.spooled + self.unread


def build_sink(cfg: AuditSinkConfig, vault: Vault | None) -> Sink:
    """A sink from its config table. A webhook's HMAC key is read from the vault record named by
    `hmac_record` (its password), so `vault` is required for webhooks."""
    from keyturn.audit.sinks.jsonl import JsonlSink
    from keyturn.audit.sinks.syslog import SyslogSink
    from keyturn.audit.sinks.webhook import WebhookSink

    if cfg.type == "jsonl":
        assert cfg.path is not None  # enforced by AuditSinkConfig
        return JsonlSink(cfg.name, cfg.path, fmt=cfg.format)
    if cfg.type == "syslog":
        assert cfg.host is not None
        return SyslogSink(cfg.name, cfg.host, port=cfg.port, protocol=cfg.protocol, fmt=cfg.format,
                          facility=cfg.facility, hostname=cfg.hostname, ca_bundle=cfg.ca_bundle,
                          timeout=cfg.timeout)
    assert cfg.url is not None and cfg.hmac_record is not None
    if vault is None:
        raise ConfigError(f"audit sink {cfg.name}: a webhook sink needs the vault for its HMAC key")
    try:
        key = vault.secret(vault.resolve(cfg.hmac_record))
    except VaultError as exc:
        raise ConfigError(f"audit sink {cfg.name}: hmac_record {cfg.hmac_record!r}: {exc}") from exc
    if key is None or not key.reveal():
        raise ConfigError(f"audit sink {cfg.name}: hmac_record {cfg.hmac_record!r} has no password to "
                          "use as the HMAC key")
    return WebhookSink(cfg.name, cfg.url, key, fmt=cfg.format, ca_bundle=cfg.ca_bundle, timeout=cfg.timeout)


class Dispatcher:
    def __init__(
        self, storage: Storage, routes: Sequence[Route], *, clock: Callable[[], float] = time.monotonic,
        poll_interval: float = 1.0, backoff_base: float = 1.0, backoff_cap: float = 300.0,
    ) -> None:
        """`clock` drives back-off only (tests inject a fake one); `poll_interval` is how often
        `run` looks for new audit entries when nobody calls `notify()`."""
        names = [r.sink.name for r in routes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"audit sink names must be unique: {', '.join(dup)}")
        self._storage = storage
        self.routes = list(routes)
        self._clock = clock
        self._poll = poll_interval
        self._base = backoff_base
        self._cap = backoff_cap
        self._wake = asyncio.Event()

    @classmethod
    def from_settings(
        cls, settings: Settings, vault: Vault, *, clock: Callable[[], float] = time.monotonic,
        poll_interval: float = 1.0,
    ) -> Dispatcher:
        """Every `[[keyturn.audit_sinks]]` of `settings`, spooled under KEYTURN_HOME/spool/."""
        routes: list[Route] = []
        try:
            for cfg in settings.audit_sinks:
                spool = Spool(settings.home / "spool" / f"{cfg.name}.sqlite", capacity=cfg.spool_max)
                routes.append(Route(build_sink(cfg, vault), spool, batch_size=cfg.batch_size, fmt=cfg.format))
            return cls(vault.storage, routes, clock=clock, poll_interval=poll_interval)
        except BaseException:
            for r in routes:
                r.spool.close()
            raise

    # --- delivery --------------------------------------------------------------------------------

    def _read(self, after: int, limit: int) -> list[AuditEvent]:
        """Entries after `after`, each carrying the chain head read in the same transaction."""
        q = sa.select(AuditRow).where(AuditRow.id > after).order_by(AuditRow.id).limit(limit)
        newest = sa.select(AuditRow.id, AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)
        with self._storage.session() as s:
            rows = list(s.scalars(q))
            top = s.execute(newest).first() if rows else None
            head = (int(top.id), str(top.hash)) if top is not None else None
            return [AuditEvent.from_row(r, head) for r in rows]

    def _head(self) -> int:
        with self._storage.session() as s:
            return int(s.scalar(sa.select(sa.func.max(AuditRow.id))) or 0)

    async def _take(self, route: Route) -> int:
        room = await asyncio.to_thread(route.spool.free)
        if room == 0:
            return 0
        cursor = await asyncio.to_thread(lambda: route.spool.cursor)
        events = await asyncio.to_thread(self._read, cursor, min(room, TAKE_PAGE))
        if not events:
            return 0
        return await asyncio.to_thread(route.spool.take, [(e.id, route.sink.render(e)) for e in events])

    def backoff(self, failures: int) -> float:
        return float(min(self._cap, self._base * 2 ** max(0, failures - 1)))

    async def _deliver(self, route: Route) -> int:
        delivered = 0
        while True:
            took = await self._take(route)
            if self._clock() < route.next_attempt:
                return delivered
            batch = await asyncio.to_thread(route.spool.peek, route.batch_size)
            if not batch:
                if took:
                    continue
                return delivered
            try:
                await route.sink.send([payload for _, payload in batch])
            except Exception as exc:
                ok = exc.delivered if isinstance(exc, AuditSinkUnavailable) else 0
                if ok:
                    await asyncio.to_thread(route.spool.ack, batch[ok - 1][0])
                    delivered += ok
                # An unexpected error is a bug in a sink: show its type only, its text may hold anything.
                reason = str(exc) if isinstance(exc, KeyturnError) else \
                    f"audit sink {route.sink.name}: internal error ({type(exc).__name__})"
                failures = await asyncio.to_thread(route.spool.failed, reason)
                delay = self.backoff(failures)
                route.next_attempt = self._clock() + delay
                log.warning("%s; %d spooled entries kept, retry in %.0f s", reason,
                            len(batch) - ok, delay)
                return delivered
            await asyncio.to_thread(route.spool.ack, batch[-1][0])
            route.next_attempt = 0.0
            delivered += len(batch)

    async def deliver_once(self) -> int:
        """One pass over every sink; returns how many messages were delivered (all sinks)."""
        counts = await asyncio.gather(*(self._deliver(r) for r in self.routes))
        return sum(counts)

    def notify(self) -> None:
        """New audit entries exist: make `run` deliver now instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; storage and sink errors are logged and retried, never raised."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.deliver_once()
            except KeyturnError as exc:
                log.warning("audit dispatch: %s", exc)
            now = self._clock()
            waits = [r.next_attempt - now for r in self.routes if r.next_attempt > now]
            timeout = min([self._poll, *waits])
            stopped = asyncio.create_task(stop.wait())
            woken = asyncio.create_task(self._wake.wait())
            try:
                await asyncio.wait({stopped, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                woken.cancel()

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> list[SinkStatus]:
        """Cursor, spool and backlog of every sink (reads the audit head once)."""
        head = self._head()
        out: list[SinkStatus] = []
        for r in self.routes:
            st: SpoolStats = r.spool.stats()
            out.append(SinkStatus(
                name=r.sink.name, kind=r.sink.kind, destination=r.sink.destination, format=r.fmt,
                cursor=st.cursor, spooled=st.spooled, unread=max(0, head - st.cursor),
                delivered=st.delivered, drops=st.drops, failures=st.failures, last_error=st.last_error,
            ))
        return out

    async def aclose(self) -> None:
        for r in self.routes:
            await r.sink.aclose()
            r.spool.close()
