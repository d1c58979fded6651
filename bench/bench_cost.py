"""Cost per rotation and per command (issue 14): `python -m bench --only cost [--cost-before REF]`.

For each target kind (IOS XE RESTCONF, IOS XE SSH, Meraki auth users) on one simulator lab: keyturn's CPU
per rotation (its process: event loop and database thread), SQL statements, RESTCONF requests and TLS
handshakes per rotation (from the lab's counters), and the CPU of one rotation split by step boundary
(prepare, verify current, generate, write-ahead, change, persist, verify new, commit, scripts, finish;
sequential rotations, so nothing else runs in between), each account's second rotation too (what a
schedule runs), and how the installation's serialized writer lock was held per rotation and phase
(SQLite's write lock, PostgreSQL's audit-chain lock: holds, statements and the holder's CPU, which the
machine's load does not inflate, and wall time, which it does). With `--cost-before REF` the same probe
runs on that revision first (a temporary git worktree; same lab, reset between runs), so before and after come
from one run. The CLI start-up rows are `bench_cli_startup`'s (median of 10).

`meraki-fleet` is the purpose of the Meraki CPU target: 10 organisations' users rotated by one process at
the budget's share (90 % of Meraki's 10 requests/s each, so 90 rotations/s in all), on a lab of its own:
the rate reached, the 429s served, the process's CPU per rotation and per second of wall (1.0 is one
core, which the event loop and the database thread share under the GIL).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.bench_simcost import py_spy, top_frames
from bench.harness import REPO, Lab, worktree
from bench.report import Row
from keyturn.engine.ratelimit import pacing_interval

PROBE = Path(__file__).resolve().with_name("cost_probe.py")
KINDS = ("iosxe-restconf", "iosxe-ssh", "meraki-auth-user", "meraki-fleet")
FLEET_ORGS = 10      # the "10 organisations at 90 % of the budget in one process"
FLEET_BUDGET = 9     # rotations/s per organisation: 90 % of Meraki's 10 requests/s


@contextlib.contextmanager
def _database(database: str) -> Iterator[str | None]:
    """None (the probe's own SQLite vault) or the URL of a fresh PostgreSQL schema, dropped after."""
    if database != "postgresql":
        yield None
        return
    import sqlalchemy as sa

    from bench.bench_scaleout import POSTGRES

    schema = f"kt_cost_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def probe(tree: Path, lab: Lab, workdir: Path, label: str, kind: str, *, accounts: int, phase_accounts: int,
          concurrency: int, database: str = "sqlite", profile: Path | None = None,
          sql: Path | None = None) -> dict[str, Any]:
    lab.reset()
    home = workdir / f"home-{label}-{kind}"
    assert lab.state_file.exists()
    with _database(database) as url:
        result = _probe(tree, home, lab, label, kind, {
            "state_file": str(lab.state_file), "home": str(home), "kind": kind, "accounts": accounts,
            "phase_accounts": phase_accounts, "concurrency": concurrency, "database_url": url,
            "sql": sql is not None}, profile / f"cost-{label}-{kind}.txt" if profile is not None else None)
    if sql is not None:
        (sql / f"sql-{label}-{kind}-{database}.txt").write_text("".join(
            f"{per:6.2f}  {text}\n" for per, text in result.get("sql_by_statement", [])))
    return result


def _probe(tree: Path, home: Path, lab: Lab, label: str, kind: str, args: dict[str, Any],
           raw: Path | None = None) -> dict[str, Any]:
    """Run the probe on `tree`; with `raw`, under py-spy (``--gil``: where the interpreter's time goes,
    the event loop and the database thread alike), its collapsed samples written there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), str(REPO)])
    command = [sys.executable, str(PROBE), json.dumps(args)]
    spy = py_spy() if raw is not None else None
    if raw is not None and spy is not None:
        command = [spy, "record", "--gil", "--format", "raw", "--rate", "250", "--output", str(raw), "--",
                   *command]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"cost probe ({label}, {kind}) failed: {proc.stderr.strip()[-800:]}")
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    result: dict[str, Any] = json.loads(last)
    result["label"] = label
    if raw is not None:
        result["profile"] = top_frames(raw, 20) if raw.exists() else [f"py-spy: no profile of {label} {kind}"]
    return result


def _line(r: dict[str, Any]) -> str:
    phases = r.get("phases_ms")
    split = "; ".join(f"{k} {v:.1f}" for k, v in phases.items()) if phases else "(no step hook)"
    locks = "; ".join(f"{k} {v:.2f}" for k, v in (r.get("lock_phases_ms") or {}).items())
    again = r.get("again") or {}
    return (f"{r['label']:>6} {r['kind']:<17} [{r.get('database', 'sqlite')}] {r['cpu_ms']:6.1f} CPU-ms/rot  "
            f"{r['sql']:5.1f} SQL/rot  writer lock per rot: {r.get('lock_holds', 0.0):.1f} holds, "
            f"{r.get('lock_sql', 0.0):.1f} statements, {r.get('lock_cpu_ms', 0.0):.2f} ms holder CPU, "
            f"{r.get('lock_ms', 0.0):.2f} ms wall (sequential, by phase: {locks or '-'}); second rotation "
            f"of each: {again.get('cpu_ms', 0.0):.1f} CPU-ms/rot, {again.get('sql', 0.0):.1f} SQL/rot, lock "
            f"{again.get('lock_sql', 0.0):.1f} statements / {again.get('lock_cpu_ms', 0.0):.2f} ms CPU / "
            f"{again.get('lock_ms', 0.0):.2f} ms wall  "
            f"{r['requests']:4.1f} req/rot  {r['handshakes']:4.2f} TLS handshakes/rot  "
            f"{r['ok']}/{r['rotations']} ok  phases (ms): {split}")


def fleet(tree: Path, lab: Lab, workdir: Path, label: str, *, accounts: int, concurrency: int,
          database: str = "sqlite") -> dict[str, Any]:
    lab.reset()
    home = workdir / f"home-{label}-fleet"
    with _database(database) as url:
        result = _probe(tree, home, lab, label, "meraki-fleet", {
            "fleet": True, "state_file": str(lab.state_file), "home": str(home), "accounts": accounts,
            "concurrency": concurrency, "database_url": url})
    return result


def _fleet_line(r: dict[str, Any]) -> str:
    passes = "; ".join(
        f"pass {i + 1}: {p['rate']:.1f} rot/s, {p['cpu_ms']:.1f} CPU-ms/rot, CPU {p['cpu_per_wall']:.2f} "
        f"s/s, {p['phases_per_tx']:.2f} phases/transaction, {p['throttled']} 429s, {p['ok']} ok"
        for i, p in enumerate(r["passes"]))
    # keyturn paces each organisation's requests `SEND_JITTER` apart beyond its share, so that no
    # 1-second window at Meraki ever holds more than the share (`keyturn.engine.ratelimit`): the rate a
    # budget-bound fleet can reach is this ceiling, not the share itself.
    ceiling = r["orgs"] / pacing_interval(FLEET_BUDGET)
    return (f"{r['label']:>6} meraki-fleet [{r.get('database', 'sqlite')}] {r['rotations']} users in "
            f"{r['orgs']} organisations, one process (budget: {r['orgs'] * FLEET_BUDGET} rot/s, paced "
            f"ceiling {ceiling:.1f}): {passes}")


def _run_fleet(workdir: Path, trees: list[tuple[str, Path]], *, users_per_org: int, concurrency: int,
               database: str) -> list[str]:
    networks = max(1, -(-users_per_org // 30))                  # networks of up to 30 users
    per_network = -(-users_per_org // networks)
    (workdir / "fleet").mkdir(parents=True, exist_ok=True)
    lab = Lab(workdir / "fleet", iosxe=0, meraki_orgs=FLEET_ORGS, networks_per_org=networks,
              users_per_network=per_network, ssh=False, restconf=False, flags=("--latency", "0"),
              timeout=1800)
    with lab:
        accounts = FLEET_ORGS * networks * per_network
        results = [fleet(tree, lab, workdir, label, accounts=accounts, concurrency=concurrency,
                         database=database) | {"label": label} for label, tree in trees]
    lines = [_fleet_line(r) for r in results]
    if len(results) == 2:
        (b, a) = (r["passes"][-1] for r in results)
        ratio = b["cpu_ms"] / max(a["cpu_ms"], 1e-9)
        lines.append(f"meraki-fleet (second pass): {b['rate']:.1f} -> {a['rate']:.1f} rot/s, CPU per "
                     f"rotation {b['cpu_ms']:.1f} -> {a['cpu_ms']:.1f} ms ({ratio:.2f}x)")
    return lines


def run(workdir: Path, *, devices: int, meraki_users: int, before: str | None = None,
        concurrency: int = 64, startup_runs: int = 10, database: str = "sqlite",
        kinds: str | None = None, profile: Path | None = None,
        startup: bool = True, sql: Path | None = None, fleet_users: int = 120) -> tuple[list[Row], list[str]]:
    """`database`: the probes' vault (sqlite, or postgresql on 127.0.0.1); `kinds`: comma-separated
    target kinds (default `KINDS`); `profile`: a directory for each probe's py-spy samples (its top
    functions join the notes; py-spy slows the probe, so its CPU figures are not comparable);
    `startup`: also the CLI start-up rows; `sql`: a directory for each probe's statements of a second
    rotation (by first line, per rotation: what the SQL count is made of); `fleet_users`: Meraki users
    per organisation of the `meraki-fleet` run (0 leaves it out)."""
    for directory in (profile, sql):
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else KINDS
    with_fleet = "meraki-fleet" in chosen and fleet_users > 0
    chosen = tuple(k for k in chosen if k != "meraki-fleet")
    phase_accounts = max(5, devices // 10)
    per_org = -(-(meraki_users + phase_accounts) // 20)      # networks of 10 users, 2 organisations
    lab = Lab(workdir, iosxe=devices + phase_accounts, users_per_device=1, meraki_orgs=2,
              networks_per_org=per_org, users_per_network=10, flags=("--latency", "0"), timeout=1800)
    results: list[dict[str, Any]] = []
    fleet_lines: list[str] = []
    trees: list[tuple[str, Path]] = [("after", REPO)]
    with worktree(before) if before else contextlib.nullcontext(None) as old:
        if old is not None:
            trees.insert(0, ("before", old))
        if chosen:
            with lab:
                for kind in chosen:
                    count = meraki_users if kind.startswith("meraki") else devices
                    for label, tree in trees:
                        results.append(probe(tree, lab, workdir, label, kind, accounts=count,
                                             phase_accounts=phase_accounts, concurrency=concurrency,
                                             database=database, profile=profile, sql=sql))
        if with_fleet:
            fleet_lines = _run_fleet(workdir, trees, users_per_org=fleet_users, concurrency=concurrency,
                                     database=database)
    notes = [f"cost: {devices} IOS XE devices per kind, {meraki_users} Meraki users, concurrency "
             f"{concurrency}, vault {database}; then each account's second rotation; phases from the second "
             f"rotation of {phase_accounts} accounts, one at a time"]
    notes += [_line(r) for r in results]
    notes += [line for r in results for line in r.get("profile", [])]
    notes += fleet_lines
    for kind in chosen:
        pair = [r for r in results if r["kind"] == kind]
        if len(pair) == 2 and pair[1]["cpu_ms"]:
            notes.append(f"{kind}: CPU per rotation {pair[0]['cpu_ms']:.1f} -> {pair[1]['cpu_ms']:.1f} ms "
                         f"({pair[0]['cpu_ms'] / pair[1]['cpu_ms']:.2f}x), SQL {pair[0]['sql']:.0f} -> "
                         f"{pair[1]['sql']:.0f}")
    if not startup:
        return [], notes
    from bench import bench_cli_startup

    rows, lines = bench_cli_startup.run(workdir / "startup", runs=startup_runs, before=before)
    return rows, notes + lines
