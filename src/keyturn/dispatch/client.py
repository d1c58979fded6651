"""Enqueue rotations for workers and follow them to their outcome (`keyturn rotate`, the API, the scheduler).

    dispatcher = Dispatcher(vault, settings.broker_url)
    ids = dispatcher.submit(["sw1-netops", "sw2-netops"], actor="cli:alice")
    results = await dispatcher.follow(ids, on_result=print_one)

`submit` records every request as queued in the ledger (one transaction), then publishes one message
per request to its site's queue. When the broker refuses (unreachable, no confirm), the requests it did
not take are marked *refused* — final, nothing was enqueued — and `BrokerUnavailable` says how many
were enqueued: a request is never left recorded-but-lost. `follow` polls the ledger (one query per
poll for all the ids) and reports each request once, when it is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from keyturn.dispatch.app import TASK_ROTATE, make_app, queue_name
from keyturn.dispatch.ledger import NewRequest, Request, RequestLedger
from keyturn.engine.outcome import Outcome, RotationResult
from keyturn.errors import BrokerUnavailable, KeyturnError

if TYPE_CHECKING:
    from celery import Celery

    from keyturn.vault import Vault

log = logging.getLogger("keyturn.dispatch")

#: How hard one publish tries before the broker counts as unreachable (seconds in all: about 1.5).
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


def display_url(url: str) -> str:
    """The broker URL without its password (for messages)."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


class Dispatcher:
    """Hands rotations to `keyturn worker`s through the broker (see the module docstring)."""

    def __init__(self, vault: Vault, broker_url: str, *, app: Celery | None = None) -> None:
        self.vault = vault
        self.broker_url = broker_url
        self.ledger = RequestLedger(vault.engine)
        self.app = app or make_app(broker_url,
                                   visibility_timeout=vault.settings.broker_visibility_timeout)

    def plan(self, refs: Sequence[str], ids: Sequence[str] | None = None) -> list[NewRequest]:
        """One request per distinct record (uid, title and site read from metadata; nothing decrypted);
        `ids` chooses the request ids (one per ref), by default fresh uuid4 hex."""
        from keyturn.sites import site_of

        out: list[NewRequest] = []
        seen: set[str] = set()
        with self.vault.unit(write=False):
            for n, ref in enumerate(refs):
                uid, _meta = self.vault.meta(ref)
                if uid in seen:
                    continue
                seen.add(uid)
                title = self.vault.summary(uid).title
                rid = ids[n] if ids is not None else uuid.uuid4().hex
                out.append(NewRequest(id=rid, record_uid=uid, title=title,
                                      site=site_of(self.vault, uid)))
        return out

    def submit(self, refs: Sequence[str], *, actor: str, ids: Sequence[str] | None = None) -> list[str]:
        """Request a rotation of every record in `refs`; returns the request ids (in order, one per
        distinct record). `BrokerUnavailable` when the broker did not take them all."""
        requests = self.plan(refs, ids)
        self.ledger.create(requests, actor=actor)
        return self.publish(requests)

    def publish(self, requests: Sequence[NewRequest | Request], *, refuse: bool = True) -> list[str]:
        """Publish the messages of recorded requests. When the broker fails, the ones it did not take
        are marked refused — unless `refuse` is False (re-publishing stranded requests: they stay
        queued for the next try, someone may be following them)."""
        done: list[str] = []
        try:
            with self.app.producer_or_acquire() as producer:
                for req in requests:
                    self.app.send_task(TASK_ROTATE, args=[req.id], task_id=req.id,
                                       queue=queue_name(req.site), producer=producer,
                                       retry=True, retry_policy=PUBLISH_RETRY)
                    done.append(req.id)
        except Exception as exc:  # kombu/amqp/redis errors all mean: the broker did not take it
            if isinstance(exc, KeyturnError):
                raise
            self.ledger.published(done)
            missing = [r.id for r in requests if r.id not in set(done)]
            why = f"broker {display_url(self.broker_url)} unreachable ({type(exc).__name__})"
            if not refuse:
                raise BrokerUnavailable(f"{why}: {len(missing)} request(s) not re-published yet") from exc
            self.ledger.refuse(missing, f"not enqueued: {why}; nothing was changed — request it again")
            raise BrokerUnavailable(f"{why}: {len(done)} of {len(requests)} rotation(s) enqueued, "
                                    f"{len(missing)} refused (nothing was changed for those)") from exc
        self.ledger.published(done)
        return [r.id for r in requests]

    async def follow(self, ids: Sequence[str], *, on_result: Callable[[RotationResult, int, int], None]
                     | None = None, poll: float = 0.3) -> list[RotationResult]:
        """Wait until every request in `ids` is final; `on_result(result, done, total)` as each one
        ends. Returns the results in the order of `ids` (bound it with `asyncio.timeout`)."""
        pending = list(dict.fromkeys(ids))
        results: dict[str, RotationResult] = {}
        while pending:
            rows = await asyncio.to_thread(self.ledger.get_many, pending)
            for req in rows:
                if req.final:
                    results[req.id] = req.to_result()
                    if on_result is not None:
                        on_result(results[req.id], len(results), len(set(ids)))
            pending = [rid for rid in pending if rid not in results]
            if not pending:
                break
            await asyncio.sleep(poll)
        return [results[rid] for rid in ids]

    def close(self) -> None:
        self.app.close()


class Follower:
    """Waits for many requests at once with one ledger query per poll (the API's and the scheduler's
    rotations in flight on workers)."""

    def __init__(self, ledger: RequestLedger, *, poll: float = 0.5) -> None:
        self.ledger = ledger
        self.poll = poll
        self._waiting: dict[str, asyncio.Future[RotationResult]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def wait(self, rid: str) -> RotationResult:
        future = self._waiting.get(rid)
        if future is None:
            future = self._waiting[rid] = asyncio.get_running_loop().create_future()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="keyturn-follower")
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while self._waiting:
            try:
                rows = await asyncio.to_thread(self.ledger.get_many, list(self._waiting))
            except KeyturnError as exc:          # a database blip: the requests are still durable
                log.warning("following rotations on workers: %s", exc)
                rows = []
            for req in rows:
                future = self._waiting.get(req.id)
                if req.final and future is not None:
                    del self._waiting[req.id]
                    if not future.done():
                        future.set_result(req.to_result())
            await asyncio.sleep(self.poll)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class RemoteEngine:
    """The engine interface the API's runner and the scheduler use (`rotate`, `recover`, `aclose`), with
    the rotation run by a worker: `rotate` enqueues under the caller's id and waits for the outcome."""

    def __init__(self, dispatcher: Dispatcher, follower: Follower, actor: str) -> None:
        self.dispatcher = dispatcher
        self.follower = follower
        self.actor = actor

    @property
    def vault(self) -> Vault:
        return self.dispatcher.vault

    async def rotate(self, ref: str, *, rotation_id: str | None = None) -> RotationResult:
        ids = [rotation_id] if rotation_id else None
        try:
            submitted = await asyncio.to_thread(self.dispatcher.submit, [ref], actor=self.actor, ids=ids)
        except KeyturnError as exc:  # broker down, unknown record: one failed outcome, as the engine does
            return RotationResult(record_uid="", title=ref, target="", outcome=Outcome.FAILED,
                                  reason=str(exc), rotation_id=rotation_id)
        return await self.follower.wait(submitted[0])

    async def recover(self, *, full: bool = True) -> list[RotationResult]:
        """Workers settle interrupted rotations per request (and `keyturn recover` does all)."""
        return []

    async def aclose(self) -> None:
        return None


def from_settings(vault: Vault) -> Dispatcher | None:
    """A dispatcher when `KEYTURN_BROKER_URL` is set, else None (rotations run in-process)."""
    url = vault.settings.broker_url
    return Dispatcher(vault, url) if url else None


__all__ = ["PUBLISH_RETRY", "Dispatcher", "Follower", "RemoteEngine", "display_url", "from_settings"]
