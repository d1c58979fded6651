"""The chaos run with workers (issue 13): `keyturn worker`s SIGKILLed mid-rotation while the CLI follows.

    run = WorkerChaos(Options(workers=3, kills=20, seed=7), workdir)
    summary = run.main()

The same lab, vault, fault switches, reboots and drifts as `Chaos`, but the rotations run on W worker
processes (`keyturn worker --site S`, one command each, a Redis database and a site of this run alone,
`KEYTURN_BROKER_VISIBILITY_TIMEOUT=10`) and every round is `keyturn rotate --all` enqueuing for them
and following until each request has its outcome. The dispatcher is never killed; while a round runs
a killer thread SIGKILLs the process group of a random worker that holds a running request (so the
kill lands mid-rotation) and starts it again at once — K kills in all, spread over the rounds.

At the end the workers stop, and before `keyturn recover` (which the classic run also does) the
supervisor reads the database (read-only SQLite, no keyturn code):

* every request exactly one outcome: each request in the ledger is final with an outcome, and each
  round's `rotate --json` printed one result per account, none twice;
* no account rotated twice at once: per record, the span of every rotation that held the account lock
  (its first journal step, the lock, to its last step, recovery's included) overlaps no other's;
* then `Chaos.final_check`: 0 lost (every vault secret logs in on the device), 0 lockouts (`/stats`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import KEYTURN, run_measured
from bench.workers import WorkerGroup, broker_env, flush_redis, session_procs, set_site

from chaos.supervisor import Chaos, Options

ROUND_LIMIT = 900.0      # seconds a round may take before the supervisor calls it stuck (and kills the CLI)


def worker_settings(o: Options) -> dict[str, str]:
    """The workers' settings: redelivery and heartbeats short, so that a killed worker's requests, claims
    and device slots come back within seconds (the defaults are minutes); the classic run's per-device
    concurrency; a 1 s retry back-off (the faults of a round are cleared when it ends, not earlier)."""
    hb = min(o.visibility_timeout, 5.0)
    return {"KEYTURN_BROKER_VISIBILITY_TIMEOUT": f"{o.visibility_timeout:g}",
            "KEYTURN_PER_DEVICE_CONCURRENCY": str(o.per_device),
            "KEYTURN_WORKER_RETRY_BACKOFF": "1",
            "KEYTURN_WORKER_HEARTBEAT": f"{hb / 2:g}",
            "KEYTURN_WORKER_STRANDED_AFTER": f"{o.visibility_timeout:g}",
            "KEYTURN_WORKER_SLOT_TTL": f"{max(3.0, o.visibility_timeout):g}"}


@dataclass
class WorkerTally:
    kills_mid_rotation: int = 0          # the victim held at least one running request when killed
    claims_killed: int = 0               # running requests held by the victims, summed
    restarts: int = 0
    results: int = 0                     # results the rounds' `rotate --json` printed
    duplicate_results: int = 0           # an account printed twice in one round
    missing_results: int = 0             # an account a round did not print
    stuck_rounds: int = 0                # the CLI did not finish within ROUND_LIMIT
    round_exits: Counter[int] = field(default_factory=Counter)


class WorkerChaos(Chaos):
    def __init__(self, opts: Options, workdir: Path, *, log: Any = print) -> None:
        super().__init__(opts, workdir, log=log)
        self.site = "chaos" + uuid.uuid4().hex[:8]
        self.groups: list[WorkerGroup] = []
        self.wenv: dict[str, str] = {}
        self.wt = WorkerTally()
        self._lock = threading.Lock()

    # ---- set-up -----------------------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        assert self.home is not None
        set_site(self.home, self.site)
        flush_redis(self.o.redis_db)
        self.wenv = broker_env(self.home.env, db=self.o.redis_db, site=self.site, **worker_settings(self.o))
        self.groups = [WorkerGroup(self.wenv, self.workdir / f"worker-{i}.log", "--site", self.site,
                                   "--concurrency", str(self.o.worker_concurrency))
                       for i in range(self.o.workers)]
        for g in self.groups:
            g.start()
        for g in self.groups:
            g.wait_ready(1)
        self.log(f"{len(self.groups)} workers on site {self.site} (Redis db {self.o.redis_db}), "
                 f"{len(self.accts)} accounts")

    # ---- the database, read-only ------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        assert self.home is not None
        return sqlite3.connect(f"file:{self.home.path / 'keyturn.db'}?mode=ro", uri=True, timeout=30)

    def running_claims(self) -> Counter[int]:
        """pid → running requests it holds."""
        conn = self._db()
        try:
            return Counter(pid for (pid,) in conn.execute(
                "SELECT claim_pid FROM rotation_requests WHERE state = 'running'"))
        finally:
            conn.close()

    def requests(self) -> list[dict[str, Any]]:
        conn = self._db()
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(
                "SELECT id, record_uid, state, outcome, deliveries, attempts FROM rotation_requests")]
        finally:
            conn.close()

    def audited_outcomes(self) -> Counter[str]:
        """request id → `rotation.request` audit entries (the outcome, audited once by its writer)."""
        conn = self._db()
        try:
            return Counter(json.loads(details).get("request_id", "") for (details,) in conn.execute(
                "SELECT details FROM kt_audit WHERE action = 'rotation.request'"))
        finally:
            conn.close()

    def outside_requests(self, until: float) -> list[str]:
        """Rotations that took the lock, started before `until` (the rounds' end), and lie in no window
        [requested, finished] of a request of their record: work done after a request's outcome was
        reported (or for no request at all)."""
        conn = self._db()
        try:
            windows: dict[str, list[tuple[float, float]]] = {}
            for uid, requested, finished in conn.execute(
                    "SELECT record_uid, requested_at, finished_at FROM rotation_requests"):
                windows.setdefault(uid, []).append((requested, finished if finished is not None else until))
            rows = list(conn.execute(
                "SELECT r.id, r.record_uid, r.title, r.started_at FROM rotations r WHERE EXISTS (SELECT 1 "
                "FROM rotation_steps s WHERE s.rotation_id = r.id AND s.step = 'lock' AND s.status = 'ok')"))
        finally:
            conn.close()
        out = []
        for rid, uid, title, started in rows:
            at = datetime.fromisoformat(str(started)).replace(tzinfo=UTC).timestamp()
            if at < until and not any(lo <= at <= hi for lo, hi in windows.get(uid, [])):
                when = datetime.fromtimestamp(at, UTC).time()
                out.append(f"{title}: rotation {rid[:12]} started at {when}, outside every request of it")
        return out

    def overlaps(self) -> list[str]:
        """Rotations of one record whose lock-holding spans overlap (see the module docstring)."""
        conn = self._db()
        try:
            rows = list(conn.execute(
                "SELECT r.record_uid, r.title, s.rotation_id, s.step, s.status, s.at FROM rotation_steps s "
                "JOIN rotations r ON r.id = s.rotation_id"))
        finally:
            conn.close()
        spans: dict[str, dict[str, list[datetime]]] = {}
        locked: set[str] = set()
        titles: dict[str, str] = {}
        for uid, title, rid, step, status, at in rows:
            titles[uid] = title
            spans.setdefault(uid, {}).setdefault(rid, []).append(datetime.fromisoformat(str(at)))
            if step == "lock" and status == "ok":
                locked.add(rid)
        out = []
        for uid, per in spans.items():
            held = sorted((min(ts), max(ts), rid) for rid, ts in per.items() if rid in locked)
            end, last = None, ""
            for start, stop, rid in held:
                if end is not None and start < end:
                    out.append(f"{titles[uid]}: rotation {rid[:12]} took the lock at {start.time()} while "
                               f"{last[:12]} ran until {end.time()}")
                if end is None or stop > end:
                    end, last = stop, rid
        return out

    # ---- kills ------------------------------------------------------------------------------------------
    def kill_one(self) -> bool:
        """SIGKILL a random worker that holds a running request, restart it; False when none holds one."""
        claims = self.running_claims()
        holders = []
        for i, g in enumerate(self.groups):
            held = sum(claims.get(p.pid, 0) for p in session_procs(g.pid)) if g.alive else 0
            if held:
                holders.append((i, held))
        if not holders:
            return False
        i, held = self.rng.choice(holders)
        g = self.groups[i]
        g.kill()
        with self._lock:
            self.tally.kills += 1
            self.wt.kills_mid_rotation += 1
            self.wt.claims_killed += held
        g.start()
        self.wt.restarts += 1
        self.log(f"  killed worker {i} (pid {g.pid} now) holding {held} running request(s); restarted")
        try:
            g.wait_ready(1)
        except RuntimeError as exc:
            self.log(f"  worker {i} did not come back: {exc}")
        return True

    def killer(self, stop: threading.Event, count: int, horizon: float) -> None:
        """`count` kills at random moments within `horizon` s of the round's start (each waits for a
        worker that holds a running request; what the round's end leaves undone is owed to the next)."""
        began = time.monotonic()
        times = sorted(self.rng.uniform(0.3, horizon) for _ in range(count))
        for at in times:
            if stop.wait(max(0.0, began + at - time.monotonic())):
                return
            while not stop.is_set():
                if self.kill_one():
                    break
                stop.wait(0.1)

    # ---- rounds -----------------------------------------------------------------------------------------
    def rounds(self) -> None:
        o = self.o
        per_round = max(1, len(self.accts))
        planned = max(1, -(-o.rotations // per_round))
        plan = Counter(self.rng.randrange(planned) for _ in range(o.kills))
        estimate = 8.0
        while len(self.journal()) < o.rotations or self.tally.kills < o.kills:
            assert self.lab is not None
            n = self.tally.rounds
            self.arm_faults()
            kills_before = self.tally.kills
            due = sum(plan[r] for r in range(n + 1)) - kills_before
            if len(self.journal()) >= o.rotations:
                due = o.kills - kills_before
            stop = threading.Event()
            events = threading.Thread(target=self.events_during, args=(stop, max(1.0, estimate * 0.8)),
                                      daemon=True)
            killer = threading.Thread(target=self.killer, args=(stop, max(0, due), max(1.0, estimate * 0.6)),
                                      daemon=True)
            events.start()
            killer.start()
            began = time.monotonic()
            out = self.workdir / f"round-{n}.json"
            usage = run_measured([*KEYTURN, "rotate", "--all", "--json"], env=self.wenv, stdout=out,
                                 stderr=self.workdir / f"round-{n}.err", kill_after=ROUND_LIMIT)
            took = time.monotonic() - began
            stop.set()
            events.join()
            killer.join()
            self.tally.rounds += 1
            self.wt.round_exits[usage.returncode] += 1
            if usage.returncode == -9:
                self.wt.stuck_rounds += 1
            self.count_results(out)
            kills = self.tally.kills - kills_before
            self.tally.round_seconds.append(took)
            if not kills:
                recent = [t for t in self.tally.round_seconds[-5:]]
                estimate = sum(recent) / len(recent)
            self.log(f"round {n}: {took:.1f} s, exit {usage.returncode}, {kills} kill(s); journal "
                     f"{len(self.journal())} rotations, {self.tally.kills} kills so far")
            self.lab.reset(faults_only=True)

    def count_results(self, out: Path) -> None:
        try:
            results = json.loads(out.read_text() or "{}").get("results", [])
        except ValueError:
            results = []
        seen = Counter(r.get("record_uid") for r in results)
        self.wt.results += len(results)
        self.wt.duplicate_results += sum(n - 1 for n in seen.values() if n > 1)
        assert self.home is not None
        self.wt.missing_results += sum(1 for a in self.accts if self.home.uids[a.title] not in seen)

    # ---- the end ----------------------------------------------------------------------------------------
    def stop_workers(self) -> None:
        for g in self.groups:
            g.stop()

    def main(self) -> dict[str, Any]:
        began = time.monotonic()
        try:
            self.setup()
            self.rounds()
            rounds_end = time.time()
            self.stop_workers()
            ledger = self.requests()
            overlaps = self.overlaps()
            audited = self.audited_outcomes()
            outside = self.outside_requests(rounds_end)
            open_before = Counter(state for state, _, _ in self.journal() if state != "done")
            check = self.final_check()
            summary = self.summary(check, time.monotonic() - began)
        finally:
            self.stop_workers()
            if self.lab is not None:
                self.lab.stop()
            flush_redis(self.o.redis_db)
        not_final = [r for r in ledger if r["state"] not in ("done", "refused") or not r["outcome"]]
        # every request exactly one outcome, in both places it is written: the ledger and the audit log
        audited_wrong = [r["id"] for r in ledger if r["state"] == "done" and audited.get(r["id"], 0) != 1]
        outcomes = Counter(str(r["outcome"]) for r in ledger)
        expected = self.tally.rounds * len(self.accts)
        summary.update({
            "workers": self.o.workers, "kills_mid_rotation": self.wt.kills_mid_rotation,
            "claims_killed": self.wt.claims_killed, "restarts": self.wt.restarts,
            "requests": len(ledger), "requests_not_final": len(not_final),
            "request_outcomes": dict(outcomes.most_common()),
            "redelivered": sum(1 for r in ledger if r["deliveries"] > 1),
            "max_deliveries": max((r["deliveries"] for r in ledger), default=0),
            "results_printed": self.wt.results, "results_expected": expected,
            "duplicate_results": self.wt.duplicate_results, "missing_results": self.wt.missing_results,
            "stuck_rounds": self.wt.stuck_rounds, "round_exits": dict(self.wt.round_exits),
            "overlaps": len(overlaps), "overlap_details": overlaps[:20],
            "outcome_audited_not_once": len(audited_wrong),
            "rotations_outside_requests": len(outside), "outside_details": outside[:20],
            "open_before_recover": dict(open_before),
        })
        summary["passed"] = bool(
            summary["passed"] and not overlaps and not not_final and len(ledger) == expected
            and not audited_wrong and not outside
            and self.wt.results == expected and not self.wt.duplicate_results
            and not self.wt.missing_results and not self.wt.stuck_rounds)
        return summary


__all__ = ["WorkerChaos"]
