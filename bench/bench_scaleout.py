"""Scale-out (issue 13): one RESTCONF lab rotated in-process, then by 1, 2 and 4 `keyturn worker` processes.

Every run starts from the same state — the lab's devices `/reset` to their initial credentials and a
vault in its state after setup — so each rotates all N accounts exactly once:

* in-process: `keyturn rotate --all --local --concurrency C` (the single-process engine);
* P workers: `keyturn worker --site S --processes P --concurrency T` (P forked worker processes, T
  rotations in flight each), started and answering a broker ping before the clock starts, then
  `keyturn rotate --all` enqueues every account and follows the ledger until each has its outcome.

The vault is SQLite (the embedded default; allowed for workers on one host), restored from a copy taken
after setup, or with `database="postgresql"` a fresh schema in the machine's PostgreSQL per run (set up
again each time). The broker, and the limits workers share, is a Redis database of this benchmark
alone, flushed before each run; the accounts' resources sit on a site of their own.

Measured per run: wall time of `keyturn rotate` (process start, enqueueing and following included);
CPU seconds of keyturn's processes only — the dispatching CLI (`os.wait4`) plus every process of the
worker command (`/proc/<pid>/stat`, forked children included, start-up excluded: sampled when ready
and when the CLI returns); the simulator's CPU over the same span (and PostgreSQL's, the whole server);
peak RSS of each worker process (`VmHWM`); the whole machine's busy CPU (`/proc/stat`), so that what
else ran on the shared cores shows; the database's growth and the rows per table; Redis commands;
failures (outcomes other than rotated, plus accounts whose new secret does not log in afterwards).
Before each run the benchmark waits (up to `patience` s) for the machine to be quiet.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import KEYTURN, Acct, Home, Lab, Usage, outcome_counts, run_measured, verify_all
from bench.report import Row, console
from bench.workers import REDIS, CpuSample, WorkerGroup, broker_env, cpu_of, flush_redis, set_site

REDIS_DB = 14
WORKER_THREADS = 32      # `keyturn worker`'s default --concurrency
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLES = ("rotations", "rotation_steps", "kt_audit", "kt_secret_versions", "rotation_requests")


@dataclass
class Measured:
    label: str
    processes: int                 # 0: in-process
    rotations: int
    wall: float
    cli_cpu: float
    worker_cpu: float
    sim_cpu: float
    db_cpu: float                  # the PostgreSQL server's (all of it); 0 for SQLite (inside keyturn)
    machine_busy: float            # CPU-s of the whole machine over the run (every process)
    rss_mib: list[float]
    outcomes: dict[str, int]
    verified: int
    notes: list[str]
    ready_s: float = 0.0
    load: float = 0.0
    quiet_before: float = 0.0      # the machine's busy share just before the run (nothing of ours running)
    db_bytes: int = 0              # database growth over the run
    db_rows: dict[str, int] = field(default_factory=dict)
    redis_commands: int = 0        # the whole redis-server's (other clients included)
    redis_cpu: float = 0.0

    @property
    def keyturn_cpu(self) -> float:
        return self.cli_cpu + self.worker_cpu

    @property
    def rate(self) -> float:
        return self.rotations / self.wall if self.wall else 0.0

    @property
    def failures(self) -> int:
        not_rotated = sum(n for k, n in self.outcomes.items() if k not in ("rotated", "rotated_unverifiable"))
        return max(not_rotated, self.rotations - self.verified)


# ---- the machine --------------------------------------------------------------------------------------


def machine_busy() -> float:
    """CPU-s the whole machine has been busy (all cores, every process) since boot."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]             # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(*, share: float = 0.15, sample: float = 3.0, patience: float = 600.0) -> tuple[float, float]:
    """Wait (at most `patience` s) until the machine is less than `share` busy over `sample` s: other work
    on shared cores would be measured as ours. Returns (seconds waited, the last busy share seen)."""
    cores = os.cpu_count() or 1
    began = time.monotonic()
    while True:
        b0 = machine_busy()
        time.sleep(sample)
        busy = (machine_busy() - b0) / (sample * cores)
        waited = time.monotonic() - began
        if busy < share or waited >= patience:
            return waited, busy


def postgres_cpu() -> CpuSample:
    """CPU-s of the PostgreSQL server: every `postgres` process, plus what the postmaster's exited
    children spent (a backend ends with its connection, before the run's last sample)."""
    per: dict[int, float] = {}
    procs: dict[int, tuple[int, float, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                continue
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        tick = os.sysconf("SC_CLK_TCK")
        procs[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick,
                             (int(fields[13]) + int(fields[14])) / tick)
    for pid, (ppid, own, children) in procs.items():
        per[pid] = own
        if ppid not in procs:             # the postmaster: its reaped backends' CPU
            per[-pid] = children
    return CpuSample(per)


def redis_counters() -> tuple[int, float]:
    """(commands processed, CPU-s) of the redis-server: the whole server, whoever its clients are."""
    import redis

    client = redis.Redis.from_url(REDIS)
    try:
        stats, cpu = client.info("stats"), client.info("cpu")
        used = float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
        return int(stats["total_commands_processed"]), used
    finally:
        client.close()


# ---- vaults -------------------------------------------------------------------------------------------


class Vaults:
    """A vault in its after-setup state for each run: SQLite restored from a copy, or a fresh
    PostgreSQL schema set up again (`database`)."""

    def __init__(self, workdir: Path, lab: Lab, site: str, database: str) -> None:
        if database not in ("sqlite", "postgresql"):
            raise ValueError(f"database must be sqlite or postgresql, not {database!r}")
        self.workdir, self.lab, self.site, self.database = workdir, lab, site, database
        self.schemas: list[str] = []
        self.pristine: Path | None = None
        self.accts: list[Acct] = []
        self.uids: dict[str, str] = {}

    def fresh(self, name: str) -> Home:
        assert self.lab.state is not None
        if self.database == "sqlite":
            home = Home(self.workdir, "home-scaleout")
            if self.pristine is None:
                self.accts = home.setup(self.lab.state, iosxe_targets=("iosxe-restconf",))
                set_site(home, self.site)
                self.pristine = self.workdir / "home-pristine"
                shutil.copytree(home.path, self.pristine)
                self.uids = home.uids
            else:
                shutil.rmtree(home.path)
                shutil.copytree(self.pristine, home.path)
                home.uids = self.uids
            return home
        import sqlalchemy as sa

        schema = f"kt_scaleout_{secrets.token_hex(4)}"
        admin = sa.create_engine(POSTGRES)
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        finally:
            admin.dispose()
        self.schemas.append(schema)
        home = Home(self.workdir, f"home-{name}")
        home.path.mkdir(mode=0o700)
        # The config file, not KEYTURN_DATABASE_URL: this process opens the vault too (setup, checks).
        (home.path / "keyturn.toml").write_text(f'[keyturn]\ndatabase_url = "{self.url(schema)}"\n')
        self.accts = home.setup(self.lab.state, iosxe_targets=("iosxe-restconf",))
        set_site(home, self.site)
        return home

    @staticmethod
    def url(schema: str) -> str:
        return f"{POSTGRES}?options=-csearch_path%3D{schema}"

    def footprint(self, home: Home) -> tuple[int, dict[str, int]]:
        """The database's size and the rows of the tables a rotation writes."""
        import sqlalchemy as sa

        if self.database == "sqlite":
            size = sum(p.stat().st_size for p in home.path.glob("keyturn.db*"))
            engine = sa.create_engine(f"sqlite:///file:{home.path / 'keyturn.db'}?mode=ro&uri=true")
        else:
            engine = sa.create_engine(self.url(self.schemas[-1]))
            size = 0
        try:
            with engine.connect() as conn:
                rows = {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
                        for t in TABLES}
                if self.database == "postgresql":
                    size = int(conn.execute(sa.text(
                        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN "
                        "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'r'"),
                        {"s": self.schemas[-1]}).scalar_one())
        finally:
            engine.dispose()
        return size, rows

    def drop(self) -> None:
        if not self.schemas:
            return
        import sqlalchemy as sa

        admin = sa.create_engine(POSTGRES)
        try:
            with admin.begin() as conn:
                for schema in self.schemas:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            admin.dispose()
        self.schemas = []


# ---- one run --------------------------------------------------------------------------------------------


def _counts(path: Path, returncode: int) -> dict[str, int]:
    counts = outcome_counts(path)
    if returncode not in (0, 1):
        counts[f"rotate exit {returncode}"] = 1
    return counts


def measure(lab: Lab, vaults: Vaults, home: Home, env: dict[str, str], workdir: Path, *, processes: int,
            threads: int, concurrency: int) -> Measured:
    """One run: workers started and ready (none for in-process), then `keyturn rotate --all` measured."""
    label = "in-process" if not processes else f"{processes} worker" + ("s" if processes > 1 else "")
    group: WorkerGroup | None = None
    ready = 0.0
    if processes:
        argv = [*KEYTURN, "rotate", "--all", "--json"]
        group = WorkerGroup(env, workdir / f"worker-{processes}.log", "--site", vaults.site, "--processes",
                            str(processes), "--concurrency", str(threads)).start()
        note = f"--processes {processes} --concurrency {threads}"
    else:
        argv = [*KEYTURN, "rotate", "--all", "--local", "--concurrency", str(concurrency), "--json"]
        note = f"--local --concurrency {concurrency}"
    out, err = workdir / f"rotate-{label.replace(' ', '-')}.json", workdir / f"rotate-{label}.err"
    try:
        if group is not None:
            ready = group.wait_ready(processes)
            time.sleep(1.0)   # past the first heartbeat (and its stranded check)
        size0, rows0 = vaults.footprint(home)
        redis0 = redis_counters()
        w0 = group.cpu() if group is not None else CpuSample({})
        sim0, db0, busy0 = cpu_of([lab.pid]), postgres_cpu(), machine_busy()
        usage = run_measured(argv, env=env, stdout=out, stderr=err)
        w1 = group.cpu() if group is not None else CpuSample({})
        sim1, db1, busy1 = cpu_of([lab.pid]), postgres_cpu(), machine_busy()
        redis1 = redis_counters()
        rss = group.peak_rss_mib() if group is not None else [usage.maxrss_mib]
    finally:
        if group is not None:
            group.stop()
    size1, rows1 = vaults.footprint(home)
    bad = verify_all(lab, vaults.accts, home.current_secrets(vaults.accts))
    return Measured(label, processes, len(vaults.accts), usage.wall, usage.cpu, w1 - w0, sim1 - sim0,
                    (db1 - db0) if vaults.database == "postgresql" else 0.0, busy1 - busy0, rss,
                    _counts(out, usage.returncode), len(vaults.accts) - len(bad), [note], ready_s=ready,
                    load=os.getloadavg()[0], db_bytes=size1 - size0,
                    db_rows={t: rows1[t] - rows0[t] for t in TABLES},
                    redis_commands=redis1[0] - redis0[0], redis_cpu=redis1[1] - redis0[1])


def run(workdir: Path, *, devices: int, concurrency: int, seed: int, processes: Sequence[int] = (1, 2, 4),
        threads: int = WORKER_THREADS, redis_db: int = REDIS_DB, database: str = "sqlite",
        patience: float = 600.0) -> tuple[list[Measured], float]:
    """Every configuration on one lab; returns the measurements and the lab's start-up seconds."""
    site = "bench" + secrets.token_hex(4)
    out: list[Measured] = []
    with Lab(workdir, iosxe=devices, users_per_device=1, ssh=False, seed=seed) as lab:
        vaults = Vaults(workdir, lab, site, database)
        try:
            for p in [0, *processes]:
                home = vaults.fresh(f"run-{p}")
                lab.reset()
                flush_redis(redis_db)
                env = broker_env(home.env, db=redis_db, site=site)
                waited, before = wait_quiet(patience=patience)
                what = "in-process" if p == 0 else f"{p} worker process(es)"
                console.print(f"  scale-out ({database}): {what} (waited {waited:.0f} s for a quiet machine: "
                              f"{100 * before:.0f} % busy) ...")
                m = measure(lab, vaults, home, env, workdir, processes=p, threads=threads,
                            concurrency=concurrency)
                m.quiet_before = before
                console.print(f"    {m.rate:.1f} rot/s, {_per_rot(m, m.keyturn_cpu)} ms keyturn CPU per "
                              f"rotation, {m.failures} failures")
                out.append(m)
        finally:
            vaults.drop()
        startup = lab.startup
    flush_redis(redis_db)
    return out, startup


# ---- reporting --------------------------------------------------------------------------------------------


def _per_rot(m: Measured, cpu: float) -> str:
    return f"{1000 * cpu / m.rotations:.1f}"


def rows_and_notes(measured: Sequence[Measured], *, devices: int, database: str
                   ) -> tuple[list[Row], list[str]]:
    """The benchmark table's rows (ratios vs 1 worker) and the lines with everything else measured."""
    name = f"scale-out RESTCONF {devices} dev ({database})"
    cores = os.cpu_count() or 1
    base = next((m for m in measured if m.processes == 1), None)
    rows: list[Row] = []
    notes: list[str] = []
    for m in measured:
        usage = Usage(wall=m.wall, cpu=m.keyturn_cpu, maxrss_mib=max(m.rss_mib or [0.0]), processes=1)
        outcome = ", ".join(f"{v} {k}" for k, v in sorted(m.outcomes.items()))
        rows.append(Row(name, m.label, m.rotations, usage, m.verified,
                        note=f"{'; '.join(m.notes)}; {outcome}; {m.failures} failures",
                        baseline_of=None if m.processes == 1 else "1 worker"))
        cap = m.wall * cores
        other = max(0.0, m.machine_busy - m.keyturn_cpu - m.sim_cpu - m.db_cpu)
        ratio = f" = {m.rate / base.rate:.2f}x 1 worker" if base is not None and base.rate else ""
        db = f"; PostgreSQL {m.db_cpu:.1f} CPU-s = {_per_rot(m, m.db_cpu)} ms/rotation" if m.db_cpu else ""
        notes.append(
            f"{m.label}: {m.rate:.1f} rot/s{ratio}; keyturn {m.keyturn_cpu:.1f} CPU-s = "
            f"{_per_rot(m, m.keyturn_cpu)} ms/rotation (CLI {m.cli_cpu:.1f}, workers {m.worker_cpu:.1f}); "
            f"simulator {m.sim_cpu:.1f} CPU-s = {_per_rot(m, m.sim_cpu)} ms/rotation{db}; machine "
            f"{100 * m.machine_busy / cap:.0f} % busy of {cores} cores (keyturn "
            f"{100 * m.keyturn_cpu / cap:.0f} %, simulator {100 * m.sim_cpu / cap:.0f} %, database server "
            f"{100 * m.db_cpu / cap:.0f} %, everything else {100 * other / cap:.0f} %; "
            f"{100 * m.quiet_before:.0f} % just before); peak RSS per worker "
            f"process {'/'.join(f'{r:.0f}' for r in m.rss_mib)} MiB; failures {m.failures}"
            + (f"; workers ready in {m.ready_s:.1f} s (not timed)" if m.processes else ""))
        rows_per = ", ".join(f"{t} {n / m.rotations:.1f}" for t, n in m.db_rows.items() if n)
        notes.append(f"{m.label}, per rotation: database +{m.db_bytes / m.rotations / 1024:.1f} KiB "
                     f"({rows_per} rows); redis-server {m.redis_commands / m.rotations:.0f} commands, "
                     f"{_per_rot(m, m.redis_cpu)} ms CPU (the whole server, other clients included)")
    return rows, notes


def limit_notes(measured: Sequence[Measured]) -> list[str]:
    """Where the limit is, per worker run: one worker process's core, the machine's cores, or neither."""
    cores = os.cpu_count() or 1
    out = []
    for m in measured:
        if not m.processes:
            continue
        per_process = m.worker_cpu / m.wall / m.processes        # cores' worth each worker process used
        busy = m.machine_busy / (m.wall * cores)
        per_rot = (m.keyturn_cpu + m.sim_cpu + m.db_cpu) / m.rotations
        if busy >= 0.9:
            where = (f"the machine's cores ({100 * busy:.0f} % busy; keyturn + simulator + database "
                     f"{1000 * per_rot:.0f} ms of CPU per rotation: at most ~{cores / per_rot:.0f} rot/s "
                     f"with all {cores} cores theirs)")
        elif per_process >= 0.85:
            where = "keyturn's CPU (each worker process kept its core busy)"
        else:
            where = (f"not the CPU ({100 * busy:.0f} % of the machine busy): the workers wait, in this "
                     "lab on the database's one serialized writer (SQLite's write lock; on PostgreSQL the "
                     "audit chain's advisory lock, see RESULTS.md)")
        out.append(f"{m.label}: each worker process used {per_process:.2f} of a core; the limit is {where}")
    return out


def print_measured(measured: Sequence[Measured], database: str) -> None:
    """The scale-out table: everything measured per run, ratios against 1 worker."""
    from rich.table import Table

    base = next((m for m in measured if m.processes == 1), None)
    cores = os.cpu_count() or 1
    table = Table(title=f"scale-out: RESTCONF on {database}, every account rotated once per run")
    cols = ("run", "rot/s", "vs 1 worker", "keyturn CPU-s", "ms CPU/rot keyturn", "ms CPU/rot sim",
            "ms CPU/rot db", "machine busy", "peak RSS/worker MiB", "failures")
    for col in cols:
        table.add_column(col)
    for m in measured:
        ratio = f"{m.rate / base.rate:.2f}x" if base is not None and base.rate else "-"
        table.add_row(m.label, f"{m.rate:.1f}", ratio, f"{m.keyturn_cpu:.1f}", _per_rot(m, m.keyturn_cpu),
                      _per_rot(m, m.sim_cpu), _per_rot(m, m.db_cpu),
                      f"{100 * m.machine_busy / (m.wall * cores):.0f} %",
                      "/".join(f"{r:.0f}" for r in m.rss_mib), str(m.failures))
    console.print(table)


def run_all(workdir: Path, args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    """`python -m bench --only scaleout`: the RESTCONF runs, then Meraki across 2 workers."""
    from bench import bench_scaleout_meraki

    opt: dict[str, Any] = vars(args)
    devices = opt.get("scaleout_devices") or (100 if args.quick else 1000)
    processes = [int(x) for x in str(opt.get("scaleout_processes") or "1,2,4").split(",") if x.strip()]
    threads = int(opt.get("scaleout_threads") or WORKER_THREADS)
    redis_db = int(opt.get("scaleout_redis_db") or REDIS_DB)
    rows: list[Row] = []
    notes: list[str] = []
    for database in str(opt.get("scaleout_database") or "sqlite").split(","):
        sub = workdir / f"restconf-{database}"
        sub.mkdir()
        measured, startup = run(sub, devices=devices, concurrency=args.concurrency, seed=args.seed,
                                processes=processes, threads=threads, redis_db=redis_db, database=database,
                                patience=float(opt.get("scaleout_patience") or 600))
        got, more = rows_and_notes(measured, devices=devices, database=database)
        print_measured(measured, database)
        rows += got
        notes += [f"{database}: lab of {devices} RESTCONF devices up in {startup:.1f} s; {os.cpu_count()} "
                  "cores shared by keyturn, the simulator, Redis, the database and whatever else runs",
                  *more, *limit_notes(measured)]
    users = opt.get("scaleout_meraki_users")
    if users is None:
        users = 60 if args.quick else 225
    if users > 0:
        sub = workdir / "meraki"
        sub.mkdir()
        got, more = bench_scaleout_meraki.run(sub, users_per_org=users, seed=args.seed, threads=threads,
                                              redis_db=redis_db,
                                              patience=float(opt.get("scaleout_patience") or 600))
        rows += got
        notes += more
    return rows, notes


__all__ = ["Measured", "Vaults", "limit_notes", "measure", "print_measured", "rows_and_notes", "run",
           "run_all"]
