"""The request ledger: every rotation handed to workers, from enqueue to its one outcome, in the database.

The broker carries only a request id; this table is the durable truth. A request is

    queued ──(a worker claims it)──► running ──► done      (its `outcome` and `result` are final)
      └──(the broker refused it)──► refused                (nothing was enqueued; said at once)

A claim names the worker's host and pid and lasts `CLAIM_TTL` seconds, renewed by the worker's
heartbeat; a second delivery of the same request (a duplicate, or a redelivery after a worker died)
finds the claim live and steps aside, or finds it gone (`keyturn.holders.holder_gone`) and takes over —
counting the delivery, so a request whose worker dies every time ends `needs_attention` instead of
looping. Requests are also what `keyturn status` and `/metrics` count per site (depth and age).
"""

from __future__ import annotations

import enum
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping

from keyturn.engine.journal import metadata, read_tx, write_tx
from keyturn.engine.outcome import Outcome, RotationResult
from keyturn.holders import HOST, holder_gone, worker_label

CLAIM_TTL = 60.0        # seconds a claim lives without a heartbeat (a worker on another host that died)

rotation_requests = sa.Table(
    "rotation_requests", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("record_uid", sa.String(64), nullable=False, index=True),
    sa.Column("title", sa.String(512), nullable=False, server_default=""),
    sa.Column("site", sa.String(64), nullable=False, server_default="default"),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deliveries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rotation_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("outcome", sa.String(32), nullable=True),
    sa.Column("result", sa.Text, nullable=False, server_default=""),
    sa.Column("requested_by", sa.String(255), nullable=False, server_default=""),
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("published_at", sa.Float, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("claim_host", sa.String(255), nullable=False, server_default=""),
    sa.Column("claim_pid", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claim_until", sa.Float, nullable=False, server_default="0"),
    sa.Column("worker", sa.String(320), nullable=False, server_default=""),
    sa.Index("ix_rotation_requests_state_site", "state", "site"),
)

workers = sa.Table(
    "workers", metadata,
    sa.Column("name", sa.String(320), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("concurrency", sa.Integer, nullable=False, server_default="0"),
    sa.Column("in_flight", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False),
)

_BY_ID = rotation_requests.select().where(rotation_requests.c.id == sa.bindparam("rid"))


class RequestState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Request:
    """One row of the ledger (no secret: `result` is a `RotationResult.to_json`)."""

    id: str
    record_uid: str
    title: str
    site: str
    state: RequestState
    attempts: int
    deliveries: int
    rotation_id: str
    outcome: Outcome | None
    result: dict[str, Any] | None
    requested_at: float
    published_at: float
    claim_host: str
    claim_pid: int
    claim_until: float

    @property
    def final(self) -> bool:
        return self.state in (RequestState.DONE, RequestState.REFUSED)

    def claim_gone(self, now: float) -> bool:
        return holder_gone(host=self.claim_host, pid=self.claim_pid, expires_at=self.claim_until, now=now)

    def to_result(self) -> RotationResult:
        """The request's outcome as `keyturn rotate` prints it (only for a final request)."""
        if self.result:
            return RotationResult.from_json(self.result)
        return RotationResult(record_uid=self.record_uid, title=self.title, target="",
                              outcome=self.outcome or Outcome.FAILED, reason="", rotation_id=self.rotation_id)


def _request(m: RowMapping) -> Request:
    return Request(
        id=m["id"], record_uid=m["record_uid"], title=m["title"], site=m["site"],
        state=RequestState(m["state"]), attempts=m["attempts"], deliveries=m["deliveries"],
        rotation_id=m["rotation_id"], outcome=Outcome(m["outcome"]) if m["outcome"] else None,
        result=json.loads(m["result"]) if m["result"] else None, requested_at=m["requested_at"],
        published_at=m["published_at"], claim_host=m["claim_host"], claim_pid=m["claim_pid"],
        claim_until=m["claim_until"],
    )


@dataclass(frozen=True, slots=True)
class NewRequest:
    id: str
    record_uid: str
    title: str
    site: str


@dataclass(frozen=True, slots=True)
class Claim:
    """What `RequestLedger.claim` found: `request` is None for an unknown id; `mine` says whether this
    worker now holds it (False: it is final, or another live worker runs it)."""

    request: Request | None
    mine: bool


@dataclass(frozen=True, slots=True)
class SiteStats:
    site: str
    queued: int
    running: int
    oldest_queued_age: float      # seconds; 0 when nothing waits
    workers: int
    in_flight: int


class RequestLedger:
    """Durable rotation requests and the worker registry (see the module docstring)."""

    def __init__(self, engine: Engine, *, clock: Any = time.time, claim_ttl: float = CLAIM_TTL) -> None:
        self.engine = engine
        self.clock = clock
        self.claim_ttl = claim_ttl

    # --- the dispatcher's side ----------------------------------------------------------------------

    def create(self, requests: Sequence[NewRequest], *, actor: str) -> None:
        """Record requests as queued, in one transaction (before anything is published).

        `published_at` starts at the creation time, not 0: publishing a large submit takes a while,
        and until `published` stamps it again the stranded sweep must see a request as just handed
        over — not as one whose message was lost (that would publish it twice). A dispatcher that
        died before publishing leaves it stranded `older_than` seconds later, as it should."""
        if not requests:
            return
        now = self.clock()
        with write_tx(self.engine) as conn:
            conn.execute(rotation_requests.insert(), [
                {"id": r.id, "record_uid": r.record_uid, "title": r.title, "site": r.site,
                 "state": RequestState.QUEUED.value, "rotation_id": r.id, "requested_by": actor,
                 "requested_at": now, "updated_at": now, "published_at": now} for r in requests])

    def published(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        with write_tx(self.engine) as conn:
            conn.execute(rotation_requests.update().where(rotation_requests.c.id.in_(list(ids)))
                         .values(published_at=self.clock()))

    def refuse(self, ids: Sequence[str], reason: str) -> None:
        """The broker did not take them: final, failed, nothing was enqueued."""
        if not ids:
            return
        now = self.clock()
        with write_tx(self.engine) as conn:
            for rid in ids:
                m = conn.execute(rotation_requests.select().where(rotation_requests.c.id == rid)
                                 ).mappings().first()
                if m is None or m["state"] != RequestState.QUEUED.value:
                    continue
                result = RotationResult(record_uid=m["record_uid"], title=m["title"], target="",
                                        outcome=Outcome.FAILED, reason=reason, rotation_id="")
                conn.execute(rotation_requests.update().where(rotation_requests.c.id == rid).values(
                    state=RequestState.REFUSED.value, outcome=Outcome.FAILED.value,
                    result=json.dumps(result.to_json()), updated_at=now, finished_at=now))

    def get(self, rid: str) -> Request | None:
        with read_tx(self.engine) as conn:
            m = conn.execute(_BY_ID, {"rid": rid}).mappings().first()
        return _request(m) if m else None

    def get_many(self, ids: Sequence[str]) -> list[Request]:
        out: list[Request] = []
        with read_tx(self.engine) as conn:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start:start + 500])
                out.extend(_request(m) for m in conn.execute(
                    rotation_requests.select().where(rotation_requests.c.id.in_(chunk))).mappings())
        return out

    # --- the worker's side ---------------------------------------------------------------------------

    def claim(self, rid: str) -> Claim:
        """Take request `rid` for this process unless it is final or a live worker holds it; counts the
        delivery. One transaction."""
        now = self.clock()
        with write_tx(self.engine) as conn:
            m = conn.execute(_BY_ID, {"rid": rid}).mappings().first()
            if m is None:
                return Claim(None, False)
            req = _request(m)
            mine = req.claim_host == HOST and req.claim_pid == os.getpid()
            if req.final or (req.state is RequestState.RUNNING and not mine and not req.claim_gone(now)):
                return Claim(req, False)
            conn.execute(rotation_requests.update().where(rotation_requests.c.id == rid).values(
                state=RequestState.RUNNING.value, deliveries=req.deliveries + 1, claim_host=HOST,
                claim_pid=os.getpid(), claim_until=now + self.claim_ttl, worker=worker_label(),
                updated_at=now))
            m = conn.execute(_BY_ID, {"rid": rid}).mappings().one()
        return Claim(_request(m), True)

    def next_attempt(self, rid: str, rotation_id: str, attempts: int) -> None:
        """Durable before the attempt starts: a crash resumes the same rotation id."""
        with write_tx(self.engine) as conn:
            conn.execute(rotation_requests.update().where(rotation_requests.c.id == rid).values(
                rotation_id=rotation_id, attempts=attempts, updated_at=self.clock()))

    def complete(self, rid: str, result: RotationResult) -> bool:
        """The request's one outcome; whether this call wrote it (a final request is never rewritten)."""
        now = self.clock()
        with write_tx(self.engine) as conn:
            res = conn.execute(rotation_requests.update().where(
                rotation_requests.c.id == rid,
                rotation_requests.c.state.notin_([RequestState.DONE.value, RequestState.REFUSED.value]),
            ).values(state=RequestState.DONE.value, outcome=result.outcome.value,
                     result=json.dumps(result.to_json()), rotation_id=result.rotation_id or rid,
                     updated_at=now, finished_at=now, claim_until=0.0))
        return res.rowcount == 1

    def release(self, rid: str) -> None:
        """Give a claimed request back (a worker shutting down before it started the rotation)."""
        with write_tx(self.engine) as conn:
            conn.execute(rotation_requests.update().where(
                rotation_requests.c.id == rid, rotation_requests.c.state == RequestState.RUNNING.value,
                rotation_requests.c.claim_host == HOST, rotation_requests.c.claim_pid == os.getpid(),
            ).values(state=RequestState.QUEUED.value, claim_until=0.0, updated_at=self.clock()))

    def renew_claims(self) -> int:
        """Heartbeat: extend every claim this process holds."""
        with write_tx(self.engine) as conn:
            res = conn.execute(rotation_requests.update().where(
                rotation_requests.c.state == RequestState.RUNNING.value,
                rotation_requests.c.claim_host == HOST, rotation_requests.c.claim_pid == os.getpid(),
            ).values(claim_until=self.clock() + self.claim_ttl))
        return int(res.rowcount or 0)

    def stranded(self, sites: Sequence[str], *, older_than: float) -> tuple[list[Request], list[Request]]:
        """(queued and not published for `older_than` s, running with a dead claim) in `sites`: the
        requests whose broker message may be gone (a broker that lost its queue, a dead worker)."""
        now = self.clock()
        with read_tx(self.engine) as conn:
            rows = [_request(m) for m in conn.execute(rotation_requests.select().where(
                rotation_requests.c.state.in_([RequestState.QUEUED.value, RequestState.RUNNING.value]),
                rotation_requests.c.site.in_(list(sites)),
                rotation_requests.c.published_at < now - older_than,
            ).order_by(rotation_requests.c.requested_at).limit(5000)).mappings()]
        queued = [r for r in rows if r.state is RequestState.QUEUED]
        dead = [r for r in rows if r.state is RequestState.RUNNING and r.claim_gone(now)]
        return queued, dead

    # --- the worker registry -------------------------------------------------------------------------

    def heartbeat(self, name: str, *, site: str, concurrency: int, in_flight: int) -> None:
        now = self.clock()
        with write_tx(self.engine) as conn:
            res = conn.execute(workers.update().where(workers.c.name == name).values(
                seen_at=now, in_flight=in_flight, host=HOST, pid=os.getpid(), site=site,
                concurrency=concurrency))
            if not res.rowcount:
                conn.execute(workers.insert().values(name=name, host=HOST, pid=os.getpid(), site=site,
                                                     concurrency=concurrency, in_flight=in_flight,
                                                     started_at=now, seen_at=now))

    def leave(self, name: str) -> None:
        with write_tx(self.engine) as conn:
            conn.execute(workers.delete().where(workers.c.name == name))

    def live_workers(self, *, within: float = CLAIM_TTL) -> list[dict[str, Any]]:
        """Workers seen in the last `within` seconds whose process (on this host) still exists."""
        now = self.clock()
        with read_tx(self.engine) as conn:
            rows = [dict(m) for m in conn.execute(workers.select()).mappings()]
        return [r for r in rows
                if not holder_gone(host=r["host"], pid=r["pid"], expires_at=r["seen_at"] + within, now=now)]

    def site_stats(self) -> list[SiteStats]:
        """Per site: queued / running requests, the oldest queued one's age, live workers, in flight."""
        now = self.clock()
        with read_tx(self.engine) as conn:
            counts = conn.execute(sa.select(
                rotation_requests.c.site, rotation_requests.c.state, sa.func.count(),
                sa.func.min(rotation_requests.c.requested_at),
            ).where(rotation_requests.c.state.in_([RequestState.QUEUED.value, RequestState.RUNNING.value]))
              .group_by(rotation_requests.c.site, rotation_requests.c.state)).all()
        per: dict[str, dict[str, Any]] = {}
        for site, state, count, oldest in counts:
            entry = per.setdefault(site, {"queued": 0, "running": 0, "oldest": None})
            entry[state] = int(count)
            if state == RequestState.QUEUED.value and oldest is not None:
                entry["oldest"] = float(oldest)
        live = self.live_workers()
        for w in live:
            per.setdefault(w["site"], {"queued": 0, "running": 0, "oldest": None})
        out = []
        for site in sorted(per):
            entry = per[site]
            mine = [w for w in live if w["site"] == site]
            oldest = entry["oldest"]
            out.append(SiteStats(site=site, queued=entry["queued"], running=entry["running"],
                                 oldest_queued_age=max(0.0, now - oldest) if oldest is not None else 0.0,
                                 workers=len(mine), in_flight=sum(int(w["in_flight"]) for w in mine)))
        return out


__all__ = ["CLAIM_TTL", "Claim", "NewRequest", "Request", "RequestLedger", "RequestState", "SiteStats",
           "rotation_requests", "workers"]
