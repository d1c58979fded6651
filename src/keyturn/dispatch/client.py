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
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from keyturn.dispatch.app import TASK_ROTATE, make_app, queue_name
from keyturn.dispatch.ledger import NewRequest, Request, RequestLedger
from keyturn.engine.outcome import RotationResult
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

    def plan(self, refs: Sequence[str]) -> list[NewRequest]:
        """One request per distinct record (uid, title and site read from metadata; nothing decrypted)."""
        from keyturn.sites import site_of

        out: list[NewRequest] = []
        seen: set[str] = set()
        with self.vault.unit(write=False):
            for ref in refs:
                uid, _meta = self.vault.meta(ref)
                if uid in seen:
                    continue
                seen.add(uid)
                title = self.vault.summary(uid).title
                out.append(NewRequest(id=uuid.uuid4().hex, record_uid=uid, title=title,
                                      site=site_of(self.vault, uid)))
        return out

    def submit(self, refs: Sequence[str], *, actor: str) -> list[str]:
        """Request a rotation of every record in `refs`; returns the request ids (in order, one per
        distinct record). `BrokerUnavailable` when the broker did not take them all."""
        requests = self.plan(refs)
        self.ledger.create(requests, actor=actor)
        return self.publish(requests)

    def publish(self, requests: Sequence[NewRequest | Request]) -> list[str]:
        """Publish the messages of recorded requests (also used to re-publish stranded ones)."""
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

    async def rotate(self, ref: str, *, actor: str) -> RotationResult:
        """Enqueue one rotation and wait for its outcome (the scheduler's dispatch callable)."""
        ids = await asyncio.to_thread(self.submit, [ref], actor=actor)
        return (await self.follow(ids))[0]

    def close(self) -> None:
        self.app.close()


def from_settings(vault: Vault) -> Dispatcher | None:
    """A dispatcher when `KEYTURN_BROKER_URL` is set, else None (rotations run in-process)."""
    url = vault.settings.broker_url
    return Dispatcher(vault, url) if url else None


__all__ = ["PUBLISH_RETRY", "Dispatcher", "display_url", "from_settings"]
