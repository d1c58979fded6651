"""One tree's cost per rotation, for `bench_cost` (run as a child with that tree's `src` on PYTHONPATH).

    python bench/cost_probe.py '{"state_file": ..., "home": ..., "kind": "iosxe-restconf", ...}'

Builds a vault of `accounts` accounts of one target kind on the running lab (the tree's own onboarding,
so an older tree gets its own schema), then (a) rotates them all in-process with `concurrency` in flight:
CPU (this process: event loop + database thread), SQL statements and the lab's RESTCONF requests and
TLS handshakes per rotation; (b) rotates `phase_accounts` more one at a time, splitting the CPU by step
boundary when the tree has the engine's measurement hook. Prints one JSON object. With ``sql``, the
statements of (a)'s second pass too (``sql_by_statement``: by first line, per rotation, most frequent first).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

PHASES = {"lock": "prepare", "verify_current": "verify current", "generate": "generate",
          "write_ahead": "write-ahead", "apply": "change", "persist": "persist", "verify_new": "verify new",
          "commit": "commit", "scripts": "scripts", "audit": "finish"}


def _accounts(vault: Any, state: Any, kind: str, count: int) -> list[str]:
    from keyturn.engine.profile import set_profile
    from keyturn.secret import Secret
    from keyturn.vault import Field

    if kind.startswith("iosxe"):
        from keyturn.sim.onboard import onboard_iosxe

        accounts = onboard_iosxe(vault, state, target=kind, devices=count, users=1, actor="bench")
        return [a.uid for a in accounts]
    key = vault.add(type="login", title="meraki-api-key", fields=[
        Field("login", None, ["api"]), Field("password", None, [Secret(state.meraki.api_key)])])
    out: list[str] = []
    for org in state.meraki.orgs:
        for net in org.networks:
            res = vault.add(type="pamMerakiNetwork", title=f"meraki-{net.id}", custom=[
                Field("text", "network_id", [net.id]), Field("text", "org_id", [org.id]),
                Field("text", "base_url", [state.meraki.base_url])])
            for user in net.users:
                rec = vault.add(type="pamUser", title=f"{net.id}-{user.email}", fields=[
                    Field("login", None, [user.email]), Field("password", None, [Secret(user.password)])])
                set_profile(vault, rec.uid, target=kind, resource=res.uid, admin=key.uid)
                out.append(rec.uid)
    return out[:count]


class WriterLockWatch:
    """The installation's serialized writer lock as this process held it, read from the SQL it sends
    (so the same probe measures an older tree): SQLite from ``BEGIN IMMEDIATE``, PostgreSQL from the
    chain lock's statement (advisory lock or the head row ``FOR UPDATE``), each to the transaction's
    COMMIT or ROLLBACK being sent (the commit's own round trip is not counted). `seconds` is wall time
    (inflated by anything else the machine runs), `cpu` the holding thread's own CPU time and
    `statements` those sent while holding it (both independent of the machine's load)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.seconds = 0.0
        self.cpu = 0.0
        self.statements = 0
        self.holds = 0
        sa.event.listen(engine, "after_cursor_execute", self._executed)
        sa.event.listen(engine, "commit", self._ended)
        sa.event.listen(engine, "rollback", self._ended)

    def _executed(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "probe_lock_since" in conn.info:
            self.statements += 1
            return
        text = statement.lstrip().upper()
        if text.startswith("BEGIN IMMEDIATE") or "PG_ADVISORY_XACT_LOCK" in text or (
                "KT_META" in text and "FOR UPDATE" in text):
            conn.info["probe_lock_since"] = (time.perf_counter(), time.thread_time())

    def _ended(self, conn: Any) -> None:
        since = conn.info.pop("probe_lock_since", None)
        if since is not None:
            self.seconds += time.perf_counter() - since[0]
            self.cpu += time.thread_time() - since[1]
            self.holds += 1

    def sample(self) -> tuple[float, float, int, int]:
        return self.seconds, self.cpu, self.statements, self.holds


def _stats(control: str) -> dict[str, int]:
    data = httpx.get(f"{control}/stats", timeout=60).json()
    out = {"requests": 0, "connections": 0}
    for dev in (data.get("iosxe") or {}).values():
        out["requests"] += int(dev.get("restconf_requests", 0))
        out["connections"] += int(dev.get("restconf_connections", 0))
    return out


Sample = tuple[float, float, int, int]


def _lock(before: Sample, after: Sample, n: int) -> dict[str, float]:
    """Writer-lock figures per rotation between two `WriterLockWatch.sample`s."""
    return {"lock_ms": 1000 * (after[0] - before[0]) / n, "lock_cpu_ms": 1000 * (after[1] - before[1]) / n,
            "lock_sql": (after[2] - before[2]) / n, "lock_holds": (after[3] - before[3]) / n}


def _open(args: dict[str, Any]) -> tuple[Any, Any]:
    """The lab's state and a new vault in ``args["home"]`` (on ``database_url`` when given)."""
    from keyturn.config import Settings
    from keyturn.sim.client import LabState
    from keyturn.vault import Vault

    url = args.get("database_url")
    vault = Vault.init(Settings(home=Path(args["home"]), **({"database_url": url} if url else {})))
    return LabState.load(Path(args["state_file"])), vault


async def _measure(args: dict[str, Any]) -> dict[str, Any]:
    from keyturn.engine import hooks
    from keyturn.engine.batch import rotate_many
    from keyturn.engine.rotate import RotationEngine

    state, vault = _open(args)
    uids = _accounts(vault, state, args["kind"], args["accounts"] + args["phase_accounts"])
    bulk, phased = uids[:args["accounts"]], uids[args["accounts"]:]
    statements = [0]

    def count(*_args: Any) -> None:
        statements[0] += 1

    sa.event.listen(vault.engine, "before_cursor_execute", count)
    held = WriterLockWatch(vault.engine)
    engine = RotationEngine(vault, actor="bench")
    out: dict[str, Any] = {"kind": args["kind"], "rotations": len(bulk)}
    try:
        s0, st0, c0, w0 = statements[0], _stats(state.control_url), time.process_time(), time.monotonic()
        h0 = held.sample()
        results = await rotate_many(engine, bulk, concurrency=args["concurrency"])
        c1, w1, st1, h1 = time.process_time(), time.monotonic(), _stats(state.control_url), held.sample()
        n = max(1, len(bulk))
        out.update(cpu_ms=1000 * (c1 - c0) / n, wall=w1 - w0, sql=(statements[0] - s0) / n,
                   database=vault.engine.dialect.name, **_lock(h0, h1, n),
                   requests=(st1["requests"] - st0["requests"]) / n,
                   handshakes=(st1["connections"] - st0["connections"]) / n,
                   outcomes=sorted({str(r.outcome) for r in results}),
                   ok=sum(1 for r in results if r.outcome.success))
        # The same accounts again: every account's second rotation (what a schedule runs, and what
        # remembers the device's stored hash from the first: one slow hash instead of two).
        s0, c0, h0 = statements[0], time.process_time(), held.sample()
        kinds: Counter[str] = Counter()

        def tally(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            kinds[statement.strip().splitlines()[0][:160]] += 1

        if args.get("sql"):
            sa.event.listen(vault.engine, "before_cursor_execute", tally)
        again = await rotate_many(engine, bulk, concurrency=args["concurrency"])
        c1, h1 = time.process_time(), held.sample()
        if args.get("sql"):
            sa.event.remove(vault.engine, "before_cursor_execute", tally)
            out["sql_by_statement"] = [[round(count / n, 2), text] for text, count in kinds.most_common()]
        out["again"] = {"cpu_ms": 1000 * (c1 - c0) / n, "sql": (statements[0] - s0) / n, **_lock(h0, h1, n),
                        "ok": sum(1 for r in again if r.outcome.success)}
        phases: dict[str, float] = {}
        observe = getattr(hooks, "observe", None)
        if observe is not None and phased:
            last, last_held = [0.0], [0.0]
            locks: dict[str, float] = {}

            def mark(step: str) -> None:
                now, now_held = time.process_time(), held.seconds
                name = PHASES.get(step, step)
                phases[name] = phases.get(name, 0.0) + now - last[0]
                locks[name] = locks.get(name, 0.0) + now_held - last_held[0]
                last[0], last_held[0] = now, now_held

            for uid in phased:   # each phased account's first rotation, unmeasured: phases are of the second
                await engine.rotate(uid)
            observe(mark)
            try:
                for uid in phased:
                    last[0], last_held[0] = time.process_time(), held.seconds
                    await engine.rotate(uid)
            finally:
                observe(None)
            out["phases_ms"] = {k: round(1000 * v / len(phased), 2) for k, v in phases.items()}
            out["lock_phases_ms"] = {k: round(1000 * v / len(phased), 3) for k, v in locks.items() if v}
    finally:
        await engine.aclose()
        vault.close()
    return out


def _meraki_counts(control: str) -> tuple[int, int]:
    """(requests, 429s) the lab's Meraki organisations served so far."""
    orgs = (httpx.get(f"{control}/stats", timeout=60).json().get("meraki") or {}).values()
    return sum(int(o.get("requests", 0)) for o in orgs), sum(int(o.get("throttled", 0)) for o in orgs)


async def _fleet(args: dict[str, Any]) -> dict[str, Any]:
    """Every Meraki user of the lab's organisations rotated by one process, as `keyturn rotate --all`
    does (`rotate_many`, `concurrency`), twice: the rate reached against the organisations' budget,
    the process's CPU per rotation and per second of wall (1.0: one core busy), and how many rotation
    phases each transaction wrote (`GroupCommit`, when the tree has it)."""
    from keyturn.engine.batch import rotate_many
    from keyturn.engine.rotate import RotationEngine

    state, vault = _open(args)
    uids = _accounts(vault, state, "meraki-auth-user", args["accounts"])
    engine = RotationEngine(vault, actor="bench")
    group = getattr(engine, "group_commit", None)
    passes: list[dict[str, Any]] = []
    try:
        for _pass in range(2):
            r0, q0 = _meraki_counts(state.control_url)
            g0 = (group.groups, group.phases) if group is not None else (0, 0)
            c0, w0 = time.process_time(), time.monotonic()
            results = await rotate_many(engine, uids, concurrency=args["concurrency"])
            c1, w1 = time.process_time(), time.monotonic()
            r1, q1 = _meraki_counts(state.control_url)
            n = max(1, len(uids))
            passes.append({
                "rate": n / (w1 - w0), "cpu_ms": 1000 * (c1 - c0) / n, "cpu_per_wall": (c1 - c0) / (w1 - w0),
                "requests": r1 - r0, "throttled": q1 - q0, "ok": sum(1 for r in results if r.outcome.success),
                "phases_per_tx": ((group.phases - g0[1]) / max(1, group.groups - g0[0])
                                  if group is not None else 1.0)})
    finally:
        await engine.aclose()
        vault.close()
    return {"kind": "meraki-fleet", "rotations": len(uids), "orgs": len(state.meraki.orgs),
            "database": vault.engine.dialect.name, "passes": passes}


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    measure = _fleet if arguments.get("fleet") else _measure
    print(json.dumps(asyncio.run(measure(arguments))))
