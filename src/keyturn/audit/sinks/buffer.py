"""Bounded, disk-backed spool for one sink (a SQLite file, KEYTURN_HOME/spool/<sink>.sqlite).

The spool holds rendered messages in FIFO order plus the sink's durable **cursor**: the id of the
last audit entry taken from the audit table. `take` inserts messages and advances the cursor in ONE
transaction, and `ack` deletes delivered messages, so across crashes an entry is never skipped and
only re-sent when the process died between a successful send and its `ack`.

Bounded, keeping the oldest. `take` accepts at most `free()` entries and moves the cursor only past
what it accepted, so when the sink is down long enough to fill the spool, newer audit entries simply
wait in the audit table (which is durable and append-only) — an outage of any length loses nothing;
the backlog is visible in `keyturn audit sinks`. Keeping the oldest also keeps the delivered stream
a gap-free prefix of the hash chain, which a SIEM can verify. Producers that are not the audit table
(`put`) cannot wait that way: when full, their newest messages are refused and counted in `drops`.

Synchronous sqlite3 calls, safe from several threads (one lock); the dispatcher calls them through
`asyncio.to_thread` so the event loop (and the rotation path) never waits on the disk.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from keyturn.errors import AuditError

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, audit_id INTEGER, payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class SpoolStats:
    cursor: int  # last audit id taken into the spool
    spooled: int  # messages waiting for delivery
    delivered: int  # messages acked since the spool was created
    drops: int  # messages refused because the spool was full (never audit-table entries)
    failures: int  # consecutive failed deliveries (0 after a success)
    last_error: str | None


class Spool:
    def __init__(self, path: Path, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("spool capacity must be >= 1")
        self.path = path
        self.capacity = capacity
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an acked-by-us entry must survive power loss
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"cannot open audit spool {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- meta ------------------------------------------------------------------------------------

    def _get(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row is not None else default

    def _set(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def _incr(self, key: str, by: int) -> None:
        self._set(key, str(int(self._get(key, "0") or 0) + by))

    def _count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])

    def _tx(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def _run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            try:
                return fn()
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise AuditError(f"audit spool {self.path}: {exc}") from exc

    # --- queue -----------------------------------------------------------------------------------

    @property
    def cursor(self) -> int:
        return self._run(lambda: int(self._get("cursor", "0") or 0))

    def free(self) -> int:
        return self._run(lambda: max(0, self.capacity - self._count()))

    def take(self, entries: Sequence[tuple[int, bytes]]) -> int:
        """Spool audit entries `(audit_id, message)` (ascending ids, all after the cursor) and move
        the cursor past the ones accepted, atomically. Returns how many were accepted (a prefix)."""
        return self._take(entries, through=None)[0]

    def _take(self, entries: Sequence[tuple[int, bytes]], *, through: int | None) -> tuple[int, int]:
        """`take`, and when every entry fit, the cursor moves on to `through` (entries read but not
        spooled). Returns (how many were accepted, the new cursor)."""

        def run() -> tuple[int, int]:
            self._tx()
            room = max(0, self.capacity - self._count())
            accepted = list(entries[:room])
            cursor = int(self._get("cursor", "0") or 0)
            for audit_id, _ in accepted:
                if audit_id <= cursor:
                    raise sqlite3.IntegrityError(f"audit id {audit_id} is not after the cursor {cursor}")
                cursor = audit_id
            if through is not None and len(accepted) == len(entries):
                cursor = max(cursor, through)
            self._db.executemany("INSERT INTO items(audit_id, payload) VALUES (?, ?)", accepted)
            self._set("cursor", str(cursor))
            self._db.execute("COMMIT")
            return len(accepted), cursor

        return self._run(run)

    def put(self, messages: Sequence[bytes]) -> int:
        """Spool messages from a producer other than the audit table; when full the newest are
        refused and counted in `drops`. Returns how many were accepted."""

        def run() -> int:
            self._tx()
            room = max(0, self.capacity - self._count())
            accepted = messages[:room]
            self._db.executemany("INSERT INTO items(audit_id, payload) VALUES (NULL, ?)",
                                 [(m,) for m in accepted])
            if len(messages) > room:
                self._incr("drops", len(messages) - room)
            self._db.execute("COMMIT")
            return len(accepted)

        return self._run(run)

    def peek(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest `limit` messages as `(seq, payload)`, still spooled."""
        return self._run(lambda: [
            (int(seq), bytes(payload)) for seq, payload in
            self._db.execute("SELECT seq, payload FROM items ORDER BY seq LIMIT ?", (limit,))
        ])

    def ack(self, through_seq: int) -> None:
        """Messages up to and including `through_seq` were delivered: drop them, reset failures."""

        def run() -> None:
            self._tx()
            n = self._db.execute("DELETE FROM items WHERE seq <= ?", (through_seq,)).rowcount
            self._incr("delivered", n)
            self._set("failures", "0")
            self._db.execute("DELETE FROM meta WHERE key = 'last_error'")
            self._db.execute("COMMIT")

        self._run(run)

    def failed(self, error: str) -> int:
        """Record a failed delivery; returns the consecutive failure count."""

        def run() -> int:
            self._tx()
            self._incr("failures", 1)
            self._set("last_error", error)
            n = int(self._get("failures", "0") or 0)
            self._db.execute("COMMIT")
            return n

        return self._run(run)

    def stats(self) -> SpoolStats:
        def run() -> SpoolStats:
            return SpoolStats(
                cursor=int(self._get("cursor", "0") or 0), spooled=self._count(),
                delivered=int(self._get("delivered", "0") or 0), drops=int(self._get("drops", "0") or 0),
                failures=int(self._get("failures", "0") or 0), last_error=self._get("last_error"),
            )

        return self._run(run)
