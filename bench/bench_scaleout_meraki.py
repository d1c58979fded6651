"""Scale-out (issue 13): Meraki auth users rotated by 2 `keyturn worker`s, 2 organisations.

The per-organisation budget is shared by every worker through Redis (`RedisOrgBudgets`): the sum over
all workers must reach the configured share of Meraki's 10 requests/s (KEYTURN_MERAKI_API_SHARE,
default 0.9 → 9 requests/s) and never exceed it. The simulator stamps each organisation's requests as
they arrive (`GET /_sim/request-times` on the Meraki port, its monotonic clock), so both are counted
where Meraki would count them:

* achieved rate: the mean, over every 1-second window inside the org's active period (first to last
  request), of the requests in that window — a steady rate r gives r, a burst at the start does not
  inflate it;
* the most requests in any 1-second window (half-open, sliding: every start time);
* 429s the simulator served (`/stats`) and rotations that did not end rotated.

Two worker commands (one process each, `--concurrency T`), started and ready before the clock starts;
`keyturn rotate --all` enqueues every user and follows. Users per network are chosen so that each org
takes ~25 s at the share.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness import KEYTURN, Home, Lab, Usage, outcome_counts, run_measured, verify_all
from bench.report import Row
from bench.workers import REDIS, WorkerGroup, broker_env, cpu_of, flush_redis, set_site
from keyturn.engine.ratelimit import SEND_JITTER, pacing_interval

REDIS_DB = 14
MERAKI_RATE = 10.0        # requests/s per organisation (Meraki's documented limit; the simulator's)


@dataclass(frozen=True)
class OrgRate:
    org: str
    requests: int
    span: float            # seconds from the first request to the last
    mean_per_window: float
    max_per_window: int
    throttled: int
    jitter_p99: float      # how much later than its pacing grid a request arrived, p99 and worst (s)
    jitter_max: float


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most stamps in any half-open window [t, t + width)."""
    ts = sorted(times)
    best, i = 0, 0
    for j, t in enumerate(ts):
        while t - ts[i] >= width:
            i += 1
        best = max(best, j - i + 1)
    return best


def mean_per_window(times: Sequence[float], width: float = 1.0) -> float:
    """The mean count of stamps in [s, s + width) over every start s in [first, last - width]: each stamp
    at x counts for the starts in [x - width, x] that lie in that range."""
    ts = sorted(times)
    if len(ts) < 2 or ts[-1] - ts[0] <= width:
        return float(len(ts))
    lo, hi = ts[0], ts[-1] - width
    covered = sum(max(0.0, min(x, hi) - max(x - width, lo)) for x in ts)
    return covered / (hi - lo)


def configured_limit(share: float) -> int:
    """What `RedisOrgBudgets` grants per organisation per second: floor(10 x share)."""
    return math.floor(MERAKI_RATE * share + 1e-9)


def arrival_jitter(times: Sequence[float], limit: int) -> tuple[float, float]:
    """How far the arrivals stray from the pacing, p99 and worst: for each run of `limit` + 1 arrivals
    in a row, how much shorter it is than the `limit` pacing intervals its grants spanned. The
    pacing's `jitter` must cover it for every 1-s window to hold at most `limit` (while the org is
    saturated; an idle gap only makes the span longer, so this never overstates)."""
    interval = pacing_interval(limit)
    ts = sorted(times)
    short = sorted(max(0.0, limit * interval - (b - a)) for a, b in zip(ts, ts[limit:], strict=False))
    if not short:
        return 0.0, 0.0
    return short[min(len(short) - 1, int(0.99 * len(short)))], short[-1]


class SendLog:
    """Collects the budget's send log from Redis while a run goes on (`{prefix}:budget-sent/{org}`:
    ticket → when the request went on the wire, µs of Redis' clock, raised by late reports; Redis keeps
    the latest 2 x limit), so the rule can also be checked at the sender, free of the simulator's own
    scheduling delay in stamping arrivals."""

    def __init__(self, db: int, orgs: Sequence[str], prefix: str = "keyturn", every: float = 0.2) -> None:
        import redis

        self._client = redis.Redis.from_url(f"{REDIS}/{db}")
        self._keys = {org: f"{prefix}:budget-sent/{org}" for org in orgs}
        self._every = every
        self.sends: dict[str, dict[bytes, float]] = {org: {} for org in orgs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> SendLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._collect()  # the last reports
        self._client.close()

    def _poll(self) -> None:
        while not self._stop.wait(self._every):
            self._collect()

    def _collect(self) -> None:
        for org, key in self._keys.items():
            for ticket, score in self._client.zrange(key, 0, -1, withscores=True):
                seen = self.sends[org]
                seen[ticket] = max(seen.get(ticket, 0.0), float(score) / 1e6)

    def times(self, org: str) -> list[float]:
        return sorted(self.sends[org].values())


def request_times(base_url: str) -> tuple[float, dict[str, list[float]]]:
    root = base_url.split("/api/v1")[0]
    body = httpx.get(f"{root}/_sim/request-times", timeout=60).json()
    return float(body["clock"]), {org: [float(t) for t in ts] for org, ts in body["orgs"].items()}


def run(workdir: Path, *, orgs: int = 2, users_per_org: int = 225, workers: int = 2, threads: int = 32,
        seed: int = 2026, redis_db: int = REDIS_DB, patience: float = 600.0) -> tuple[list[Row], list[str]]:
    from bench.bench_scaleout import machine_busy, wait_quiet

    site = "bench" + uuid.uuid4().hex[:8]
    share = float(os.environ.get("KEYTURN_MERAKI_API_SHARE") or 0.9)
    limit = configured_limit(share)
    flush_redis(redis_db)
    with Lab(workdir, meraki_orgs=orgs, networks_per_org=1, users_per_network=users_per_org, seed=seed,
             ssh=False) as lab:
        assert lab.state is not None and lab.state.meraki is not None
        home = Home(workdir, "home-scaleout-meraki")
        accts = home.setup(lab.state)
        set_site(home, site)
        env = broker_env(home.env, db=redis_db, site=site)
        groups = [WorkerGroup(env, workdir / f"meraki-worker-{i}.log", "--site", site, "--concurrency",
                              str(threads)) for i in range(workers)]
        try:
            for g in groups:
                g.start()
            for g in groups:
                g.wait_ready(1)
            time.sleep(1.0)
            waited, quiet = wait_quiet(patience=patience)
            since, _ = request_times(lab.state.meraki.base_url)
            cpu0, busy0 = cpu_of([g.pid for g in groups]), machine_busy()
            out, err = workdir / "rotate-meraki.json", workdir / "rotate-meraki.err"
            with SendLog(redis_db, [o.id for o in lab.state.meraki.orgs]) as sent:
                usage = run_measured([*KEYTURN, "rotate", "--all", "--json"], env=env, stdout=out,
                                     stderr=err)
            worker_cpu = cpu_of([g.pid for g in groups]) - cpu0
            busy = (machine_busy() - busy0) / (usage.wall * (os.cpu_count() or 1))
            rss = [r for g in groups for r in g.peak_rss_mib()]
        finally:
            for g in groups:
                g.stop()
        _, stamps = request_times(lab.state.meraki.base_url)
        (workdir / "meraki-request-times.json").write_text(json.dumps({"since": since, "orgs": stamps}))
        stats = lab.stats()["meraki"]
        bad = verify_all(lab, accts, home.current_secrets(accts))
    flush_redis(redis_db)
    counts = outcome_counts(out)
    rates = []
    for org in sorted(stats):
        ts = [t for t in stamps.get(org, []) if t >= since]
        rates.append(OrgRate(org, len(ts), (max(ts) - min(ts)) if ts else 0.0, mean_per_window(ts),
                             max_in_window(ts), int(stats[org].get("throttled", 0)),
                             *arrival_jitter(ts, limit)))
    failed = sum(n for k, n in counts.items() if k not in ("rotated", "rotated_unverifiable"))
    name = f"scale-out Meraki {orgs} orgs x {users_per_org} users"
    row = Row(name, f"{workers} workers", len(accts),
              Usage(wall=usage.wall, cpu=usage.cpu + worker_cpu, maxrss_mib=max(rss or [0.0]), processes=1),
              len(accts) - len(bad),
              note=f"--concurrency {threads} each; "
                   + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f"; {failed} failed")
    notes = [f"configured share {share:g} of {MERAKI_RATE:g}/s = {limit} requests/s per org, shared by "
             f"{workers} workers through Redis"]
    for r in rates:
        wire = sent.times(r.org)
        notes.append(
            f"org {r.org}: at the sender (the budget's send log, stamped on the wire): {len(wire)} sends, "
            f"max in any 1-s window {max_in_window(wire)}")
        notes.append(
            f"org {r.org}: {r.requests} requests in {r.span:.1f} s; achieved {r.mean_per_window:.2f}/s = "
            f"{100 * r.mean_per_window / limit:.1f} % of the share (mean over 1-s windows); max in any 1-s "
            f"window {r.max_per_window} (share {limit}); 429s served {r.throttled}; arrivals off the "
            f"pacing by {1000 * r.jitter_p99:.0f} ms p99, {1000 * r.jitter_max:.0f} ms worst (margin "
            f"{1000 * SEND_JITTER:.0f} ms)")
    notes.append(f"machine {100 * quiet:.0f} % busy before the run (waited {waited:.0f} s for a quiet one), "
                 f"{100 * busy:.0f} % during it (every process; a busy machine stalls the rotations "
                 "between their requests, and slots nobody is waiting for are not caught up)")
    notes.append(f"rotations not rotated: {failed}; keyturn CPU {usage.cpu + worker_cpu:.1f} s (CLI "
                 f"{usage.cpu:.1f}, workers {worker_cpu:.1f}); peak RSS per worker "
                 f"{'/'.join(f'{x:.0f}' for x in rss)} MiB")
    return [row], notes


__all__ = ["OrgRate", "SendLog", "arrival_jitter", "configured_limit", "max_in_window", "mean_per_window",
           "request_times", "run"]
