"""Account locks: one rotation per account at a time, across threads, processes and hosts.

A lock is a row in `rotation_locks` keyed by `Account.lock_key`. Acquiring inserts the row inside a
transaction; the primary key makes a second insert fail, on SQLite and PostgreSQL alike, so two
processes can never both hold it. Each row has a lease (renewed as the rotation advances) and names its
holder's host and pid, so a lock is *stale* — and may be taken over — when its lease has expired or its
holder was a process on this host that no longer exists (a crashed or killed engine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from keyturn.engine.journal import read_tx, rotation_locks, write_tx
from keyturn.errors import RotationLocked
from keyturn.holders import HOST, holder_gone

DEFAULT_LEASE = 900.0   # seconds; longer than any single step's worst case (timeouts x retries)


@dataclass(frozen=True, slots=True)
class LockInfo:
    key: str
    owner: str
    host: str
    pid: int
    expires_at: float


class LockManager:
    """Lease-based, database-backed mutual exclusion per account key."""

    def __init__(self, engine: Engine, *, lease: float = DEFAULT_LEASE,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.lease = lease
        self.clock = clock

    def is_stale(self, info: LockInfo) -> bool:
        """Expired lease, or a holder process on this host that is gone."""
        return holder_gone(host=info.host, pid=info.pid, expires_at=info.expires_at, now=self.clock())

    def holder(self, key: str) -> LockInfo | None:
        with read_tx(self.engine) as conn:
            m = conn.execute(rotation_locks.select().where(rotation_locks.c.key == key)).mappings().first()
        return LockInfo(m["key"], m["owner"], m["host"], m["pid"], m["expires_at"]) if m else None

    def acquire(self, key: str, owner: str) -> None:
        """Take the lock for `owner` (re-entrant for the same owner); `RotationLocked` if held."""
        try:
            with write_tx(self.engine) as conn:
                query = rotation_locks.select().where(rotation_locks.c.key == key)
                m = conn.execute(query).mappings().first()
                if m is not None:
                    info = LockInfo(m["key"], m["owner"], m["host"], m["pid"], m["expires_at"])
                    if info.owner != owner and not self.is_stale(info):
                        raise RotationLocked(
                            f"account {key} is being rotated by rotation {info.owner[:12]} "
                            f"(pid {info.pid} on {info.host}); try again when it has finished"
                        )
                    # Delete only the row we judged: a concurrent taker that already replaced it keeps it.
                    conn.execute(rotation_locks.delete().where(
                        rotation_locks.c.key == key, rotation_locks.c.owner == info.owner))
                conn.execute(rotation_locks.insert().values(
                    key=key, owner=owner, host=HOST, pid=os.getpid(), expires_at=self.clock() + self.lease))
        except IntegrityError as exc:
            raise RotationLocked(f"account {key} was locked by another rotation just now; try again") from exc

    def renew(self, key: str, owner: str) -> None:
        with write_tx(self.engine) as conn:
            conn.execute(rotation_locks.update().where(
                rotation_locks.c.key == key, rotation_locks.c.owner == owner,
            ).values(expires_at=self.clock() + self.lease))

    def release(self, key: str, owner: str) -> None:
        """Release if `owner` still holds it (idempotent)."""
        with write_tx(self.engine) as conn:
            conn.execute(rotation_locks.delete().where(
                rotation_locks.c.key == key, rotation_locks.c.owner == owner))

    def all(self) -> list[LockInfo]:
        with read_tx(self.engine) as conn:
            return [LockInfo(m["key"], m["owner"], m["host"], m["pid"], m["expires_at"])
                    for m in conn.execute(rotation_locks.select()).mappings()]

    def release_stale(self) -> list[LockInfo]:
        """Drop every stale lock; returns what was released."""
        released = []
        for info in self.all():
            if self.is_stale(info):
                with write_tx(self.engine) as conn:
                    res = conn.execute(rotation_locks.delete().where(
                        rotation_locks.c.key == info.key, rotation_locks.c.owner == info.owner,
                        rotation_locks.c.expires_at == info.expires_at))
                if res.rowcount:
                    released.append(info)
        return released


__all__ = ["DEFAULT_LEASE", "LockInfo", "LockManager"]
