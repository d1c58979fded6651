"""The floor under keyturn's CPU per rotation: what the parts a verified rotation cannot skip cost
on this machine, each alone, in this process (issue 14).

    python -m bench --only floor

A verified IOS XE RESTCONF rotation must (a) check one type-9 (scrypt) stored hash — the lockout-safe
proof of issue 11: keyturn reads the hash the device stores and checks the new secret against it
instead of logging in with it; (b) make its HTTPS requests to the device over one kept-alive TLS
connection; (c) commit five durable phases (prepare, write-ahead, persist, commit, finish) in the
vault. Each is timed here with nothing of keyturn's engine around it:

* ``scrypt``: `keyturn.cisco_hash.verify_hash` of a type-9 hash (N=16384, r=1, p=1);
* ``handshake``: a new client and connection (TLS 1.3, certificate verified) less a kept-alive GET;
* ``request``: one GET with HTTP Basic to a lab device through httpx's AsyncClient, connection kept
  alive, client CPU only (the lab runs in its own process);
* ``transaction``: one SQLite write transaction in WAL mode with ``synchronous=NORMAL`` (the vault's
  settings) of four statements (``BEGIN IMMEDIATE``, an UPDATE, an INSERT, an UPDATE), through
  SQLAlchemy Core, run in a worker thread as the engine runs its database work; and the same through
  the bare ``sqlite3`` module for reference;
* ``hop``: one `asyncio.to_thread` round trip (the engine hands each durable phase to a thread).

The floor of one rotation = scrypt + handshake + requests * request + 5 * (transaction + hop), with
the request count the lab measured for keyturn. Figures are medians of repeated runs; they are CPU of this
process (`time.process_time`), so another process's load inflates them little.
"""

from __future__ import annotations

import asyncio
import sqlite3
import ssl
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.harness import Lab
from bench.report import Row

ROUNDS = 7


def _median_cpu(fn: Callable[[], None], per_round: int) -> float:
    """Median over `ROUNDS` of the CPU seconds of one call, each round `per_round` calls."""
    fn()   # warm: caches, imports, first connection
    out = []
    for _ in range(ROUNDS):
        c0 = time.process_time()
        for _ in range(per_round):
            fn()
        out.append((time.process_time() - c0) / per_round)
    return statistics.median(out)


async def _median_cpu_async(fn: Callable[[], Awaitable[Any]], per_round: int) -> float:
    await fn()
    out = []
    for _ in range(ROUNDS):
        c0 = time.process_time()
        for _ in range(per_round):
            await fn()
        out.append((time.process_time() - c0) / per_round)
    return statistics.median(out)


def _scrypt() -> float:
    from keyturn.cisco_hash import type9_hash, verify_hash

    stored = type9_hash("Floor-probe-secret-1")

    def check() -> None:
        if not verify_hash("Floor-probe-secret-1", stored):
            raise AssertionError("type-9 round trip failed")
    return _median_cpu(check, 10)


_SCHEMA = ("CREATE TABLE IF NOT EXISTS t_row (id TEXT PRIMARY KEY, state TEXT, n INTEGER)",
           "CREATE TABLE IF NOT EXISTS t_log (id INTEGER PRIMARY KEY, rid TEXT, msg TEXT, at REAL)",
           "CREATE TABLE IF NOT EXISTS t_head (k TEXT PRIMARY KEY, v TEXT)")


def _sqlite_core(path: Path) -> tuple[float, float]:
    """CPU of one four-statement write transaction through SQLAlchemy Core; and with a thread hop."""
    engine = sa.create_engine(f"sqlite:///{path}", isolation_level=None)   # BEGIN is ours, as the vault's

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi: Any, _record: Any) -> None:
        cur = dbapi.cursor()
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    with engine.connect() as conn:
        for ddl in _SCHEMA:
            conn.exec_driver_sql(ddl)
        conn.exec_driver_sql("INSERT OR REPLACE INTO t_row VALUES ('r', 'running', 0)")
        conn.exec_driver_sql("INSERT OR REPLACE INTO t_head VALUES ('h', '0')")
    meta = sa.MetaData()
    row = sa.Table("t_row", meta, sa.Column("id", sa.String, primary_key=True), sa.Column("state", sa.String),
                   sa.Column("n", sa.Integer))
    log = sa.Table("t_log", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("rid", sa.String),
                   sa.Column("msg", sa.String), sa.Column("at", sa.Float))
    head = sa.Table("t_head", meta, sa.Column("k", sa.String, primary_key=True), sa.Column("v", sa.String))
    bump = row.update().where(row.c.id == "r").values(n=row.c.n + 1, state=sa.bindparam("state"))
    add = log.insert()
    move = head.update().where(head.c.k == "h").values(v=sa.bindparam("v"))
    conn = engine.connect()

    def tx() -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.execute(bump, {"state": "running"})
        conn.execute(add, {"rid": "r", "msg": "step ok", "at": time.time()})
        conn.execute(move, {"v": "x" * 64})
        conn.exec_driver_sql("COMMIT")

    alone = _median_cpu(tx, 200)

    async def hopped() -> float:
        return await _median_cpu_async(lambda: asyncio.to_thread(tx), 200)

    with_hop = asyncio.run(hopped())
    conn.close()
    engine.dispose()
    return alone, with_hop


def _sqlite_bare(path: Path) -> float:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")

    def tx() -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE t_row SET n = n + 1, state = ? WHERE id = 'r'", ("running",))
        db.execute("INSERT INTO t_log (rid, msg, at) VALUES (?, ?, ?)", ("r", "step ok", time.time()))
        db.execute("UPDATE t_head SET v = ? WHERE k = 'h'", ("x" * 64,))
        db.execute("COMMIT")

    cpu = _median_cpu(tx, 200)
    db.close()
    return cpu


def _hop() -> float:
    async def run() -> float:
        return await _median_cpu_async(lambda: asyncio.to_thread(lambda: None), 500)
    return asyncio.run(run())


def _request(lab: Lab) -> tuple[float, float]:
    state = lab.state
    assert state is not None
    device = state.iosxe[0]
    ctx = ssl.create_default_context(cadata=device.ca_cert or Path(state.ca_cert).read_text())
    url = f"{device.restconf_url}/data/Cisco-IOS-XE-native:native/username={device.admin.username}"

    async def run() -> float:
        async with httpx.AsyncClient(verify=ctx, auth=(device.admin.username, device.admin.password),
                                     headers={"Accept": "application/yang-data+json"}) as client:
            async def get() -> None:
                (await client.get(url)).raise_for_status()
            kept = await _median_cpu_async(get, 50)

        async def fresh() -> None:   # a new connection: the TLS handshake and the request
            async with httpx.AsyncClient(verify=ctx, auth=(device.admin.username, device.admin.password),
                                         headers={"Accept": "application/yang-data+json"}) as client:
                (await client.get(url)).raise_for_status()
        return kept, await _median_cpu_async(fresh, 10) - kept
    return asyncio.run(run())


def run(workdir: Path, *, requests_per_rotation: float = 7.0) -> tuple[list[Row], list[str]]:
    """Measure each part; one note line per part and the floor they add up to."""
    lab = Lab(workdir, iosxe=1, users_per_device=1, ssh=False, flags=("--latency", "0"))
    with lab:
        request, handshake = _request(lab)
    scrypt = _scrypt()
    with tempfile.TemporaryDirectory() as tmp:
        tx, tx_hop = _sqlite_core(Path(tmp) / "floor.db")
        bare = _sqlite_bare(Path(tmp) / "floor.db")
    hop = _hop()
    floor = scrypt + handshake + requests_per_rotation * request + 5 * tx_hop
    ms = 1000.0
    notes = [
        f"floor: scrypt check {scrypt * ms:.2f} ms; TLS handshake (and a client's set-up) "
        f"{handshake * ms:.2f} ms; HTTPS request (keep-alive, client CPU) {request * ms:.2f} ms; "
        f"write transaction of 4 statements: SQLAlchemy Core {tx * ms:.2f} ms ({tx_hop * ms:.2f} ms with the "
        f"thread hop), bare sqlite3 {bare * ms:.2f} ms; thread hop alone {hop * ms:.3f} ms",
        f"floor of one verified RESTCONF rotation = scrypt + a handshake + "
        f"{requests_per_rotation:g} requests + 5 durable phases = {floor * ms:.1f} ms of CPU "
        f"(each phase at its minimum of 4 statements)",
        f"floor of one Meraki rotation = one HTTPS request + 4 durable phases = "
        f"{(request + 4 * tx_hop) * ms:.1f} ms of CPU (no handshake: the API connection stays open)",
    ]
    return [], notes
