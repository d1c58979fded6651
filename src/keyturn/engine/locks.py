"""Account locks: one rotation per account at a time, across threads, processes and hosts.

A lock is a row in `rotation_locks` keyed by `Account.lock_key`. Acquiring inserts the row inside a
transaction; the primary key makes a second insert fail, on SQLite and PostgreSQL alike, so two
processes can never both hold it. Each row has a lease (renewed as the rotation advances) and names its
holder's host and pid, so a lock is *stale* — and may be taken over — when its lease has expired or its
holder was a process on this host that no longer exists (a crashed or killed engine).

Fencing: every acquisition gets a fresh random `token` (even a takeover by the same rotation id, which
is what recovery does). A holder's durable writes call `fence(key, owner, token)` inside their own
transaction: it renews the lease *and* fails with `LeaseLost` when the row is no longer this holder's —
so a worker that stalled past its lease while another took over can never commit. On PostgreSQL the
renewing UPDATE keeps the row locked until the writer commits, and a takeover deletes only the exact
row it judged stale (same token and expiry), so renew-then-commit and takeover cannot interleave.
The rotation engine renews only once half the lease has passed (`renewal_due`); in between, its
journal UPDATE carries the same check (`held`), so a durable phase costs no statement for fencing.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from keyturn.engine.journal import Bound, read_tx, rotation_locks, write_tx
from keyturn.errors import LeaseLost, RotationLocked
from keyturn.holders import HOST, holder_gone

DEFAULT_LEASE = 900.0   # seconds; longer than any single step's worst case (timeouts x retries)


# The fence and release a rotation's journal writes carry (`held`, `release_bound`): built once.
_HELD = sa.select(rotation_locks.c.key).where(
    rotation_locks.c.key == sa.bindparam("lk_key"), rotation_locks.c.owner == sa.bindparam("lk_owner"),
    rotation_locks.c.token == sa.bindparam("lk_token"),
).with_for_update(read=True).exists()
_RELEASE = rotation_locks.delete().where(
    rotation_locks.c.key == sa.bindparam("lr_key"), rotation_locks.c.owner == sa.bindparam("lr_owner"),
    rotation_locks.c.token == sa.bindparam("lr_token"))


@dataclass(frozen=True, slots=True)
class LockInfo:
    key: str
    owner: str
    host: str
    pid: int
    expires_at: float
    token: str = ""


def _info(m: RowMapping) -> LockInfo:
    return LockInfo(m["key"], m["owner"], m["host"], m["pid"], m["expires_at"], m["token"] or "")


@functools.cache
def _insert_if_free(dialect: str) -> sa.Insert | None:
    """INSERT that does nothing when the key is taken (no error, so no savepoint): SQLite and
    PostgreSQL both have ``ON CONFLICT DO NOTHING``; None for other databases (read first). It
    returns the key when it inserted: psycopg reports no row count for it (-1), so rowcount would
    send every PostgreSQL acquisition down the read-delete-insert path."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        return sqlite_insert(rotation_locks).on_conflict_do_nothing(index_elements=["key"]) \
            .returning(rotation_locks.c.key)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        return pg_insert(rotation_locks).on_conflict_do_nothing(index_elements=["key"]) \
            .returning(rotation_locks.c.key)
    return None


class LockManager:
    """Lease-based, database-backed mutual exclusion per account key, with fencing tokens."""

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
        return _info(m) if m else None

    def acquire(self, key: str, owner: str) -> str:
        """Take the lock for `owner` (re-entrant for the same owner); `RotationLocked` if held. Returns
        the new fencing token (see `fence`)."""
        token = secrets.token_hex(16)
        try:
            with write_tx(self.engine) as conn:
                row = {"key": key, "owner": owner, "host": HOST, "pid": os.getpid(),
                       "expires_at": self.clock() + self.lease, "token": token}
                free = _insert_if_free(self.engine.dialect.name)
                if free is not None and conn.execute(free, row).first() is not None:
                    return token   # the usual case: the lock was free (one statement)
                query = rotation_locks.select().where(rotation_locks.c.key == key)
                m = conn.execute(query).mappings().first()
                if m is not None:
                    info = _info(m)
                    if info.owner != owner and not self.is_stale(info):
                        raise RotationLocked(
                            f"account {key} is being rotated by rotation {info.owner[:12]} "
                            f"(pid {info.pid} on {info.host}); try again when it has finished"
                        )
                    # Delete only the exact row we judged (owner, token, expiry): a holder that renewed
                    # meanwhile, or a concurrent taker that replaced it, keeps it.
                    conn.execute(rotation_locks.delete().where(
                        rotation_locks.c.key == key, rotation_locks.c.owner == info.owner,
                        rotation_locks.c.token == info.token, rotation_locks.c.expires_at == info.expires_at))
                conn.execute(rotation_locks.insert().values(
                    key=key, owner=owner, host=HOST, pid=os.getpid(), expires_at=self.clock() + self.lease,
                    token=token))
        except IntegrityError as exc:
            raise RotationLocked(f"account {key} was locked by another rotation just now; try again") from exc
        return token

    def fence(self, key: str, owner: str, token: str) -> None:
        """Inside the caller's write transaction: renew the lease, or raise `LeaseLost` when the lock is
        no longer this holder's (expired and taken over) — the caller must not commit."""
        with write_tx(self.engine) as conn:
            res = conn.execute(rotation_locks.update().where(
                rotation_locks.c.key == key, rotation_locks.c.owner == owner, rotation_locks.c.token == token,
            ).values(expires_at=self.clock() + self.lease))
        if res.rowcount != 1:
            raise self.lost(key, owner)

    @staticmethod
    def held(key: str, owner: str, token: str) -> Bound:
        """`fence` without the renewal, as a condition for a statement the holder runs anyway (the
        journal's rotation UPDATE): true while the lock is this acquisition's. On PostgreSQL the lock
        row is share-locked until the holder commits, so a takeover's delete waits for that commit,
        as it waits for `fence`'s renewing UPDATE. A statement that matched no row means `lost`."""
        return Bound(_HELD, {"lk_key": key, "lk_owner": owner, "lk_token": token})

    def renewal_due(self, renewed_at: float) -> bool:
        """Whether a holder that last renewed (or acquired) at `renewed_at` should renew with `fence`
        now: once half the lease has passed, so it never comes near expiring while the holder writes."""
        return self.clock() - renewed_at >= self.lease / 2

    @staticmethod
    def lost(key: str, owner: str) -> LeaseLost:
        return LeaseLost(f"rotation {owner[:12]} lost the lock of account {key} to another rotation "
                         "(its lease expired); that one settles the account, this one wrote nothing more")

    def renew(self, key: str, owner: str) -> None:
        with write_tx(self.engine) as conn:
            conn.execute(rotation_locks.update().where(
                rotation_locks.c.key == key, rotation_locks.c.owner == owner,
            ).values(expires_at=self.clock() + self.lease))

    def release(self, key: str, owner: str, token: str | None = None) -> None:
        """Release if `owner` (and, when given, this acquisition's `token`) still holds it (idempotent)."""
        with write_tx(self.engine) as conn:
            conn.execute(self.release_statement(key, owner, token))

    @staticmethod
    def release_statement(key: str, owner: str, token: str | None = None) -> sa.Delete:
        """`release` as a statement."""
        query = rotation_locks.delete().where(rotation_locks.c.key == key, rotation_locks.c.owner == owner)
        return query.where(rotation_locks.c.token == token) if token is not None else query

    @staticmethod
    def release_bound(key: str, owner: str, token: str) -> Bound:
        """`release` of this acquisition as a prebuilt statement and its parameters, for a caller that
        runs it with its own (the journal's last step)."""
        return Bound(_RELEASE, {"lr_key": key, "lr_owner": owner, "lr_token": token})

    def all(self) -> list[LockInfo]:
        with read_tx(self.engine) as conn:
            return [_info(m) for m in conn.execute(rotation_locks.select()).mappings()]

    def release_stale(self) -> list[LockInfo]:
        """Drop every stale lock; returns what was released."""
        released = []
        for info in self.all():
            if self.is_stale(info):
                with write_tx(self.engine) as conn:
                    res = conn.execute(rotation_locks.delete().where(
                        rotation_locks.c.key == info.key, rotation_locks.c.owner == info.owner,
                        rotation_locks.c.token == info.token,
                        rotation_locks.c.expires_at == info.expires_at))
                if res.rowcount:
                    released.append(info)
        return released


__all__ = ["DEFAULT_LEASE", "LockInfo", "LockManager"]
