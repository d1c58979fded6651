"""Account locks on a real SQLite database: exclusive, re-entrant, stale leases and dead holders."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from keyturn.engine.journal import Journal, rotation_locks
from keyturn.engine.locks import LockManager
from keyturn.errors import RotationLocked


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path):
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'locks.db'}")
    Journal(eng).create_tables()
    yield eng
    eng.dispose()


def test_second_owner_is_refused_until_release(engine):
    locks = LockManager(engine)
    locks.acquire("sw1/netops", "a" * 32)
    with pytest.raises(RotationLocked, match="being rotated by rotation aaaaaaaaaaaa"):
        locks.acquire("sw1/netops", "b" * 32)
    locks.acquire("sw1/other", "b" * 32)           # other accounts are independent
    locks.acquire("sw1/netops", "a" * 32)           # re-entrant for the same owner
    locks.release("sw1/netops", "a" * 32)
    locks.acquire("sw1/netops", "b" * 32)
    assert locks.holder("sw1/netops").owner == "b" * 32


def test_expired_lease_can_be_taken_over(engine):
    clock = Clock()
    locks = LockManager(engine, lease=30.0, clock=clock)
    locks.acquire("k", "a" * 32)
    clock.now += 29
    with pytest.raises(RotationLocked):
        locks.acquire("k", "b" * 32)
    locks.renew("k", "a" * 32)
    clock.now += 29
    with pytest.raises(RotationLocked):
        locks.acquire("k", "b" * 32)
    clock.now += 2
    locks.acquire("k", "b" * 32)
    assert locks.holder("k").owner == "b" * 32
    locks.release("k", "a" * 32)                    # a late release by the old owner changes nothing
    assert locks.holder("k").owner == "b" * 32


def test_lock_of_a_dead_process_is_stale(engine):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    locks = LockManager(engine)
    locks.acquire("k", "a" * 32)
    with engine.begin() as conn:
        conn.execute(rotation_locks.update().values(pid=pid))
    assert locks.is_stale(locks.holder("k"))
    assert [i.owner for i in locks.release_stale()] == ["a" * 32]
    assert locks.all() == []


def test_two_processes_cannot_both_hold_a_lock(engine):
    # Every contender stays alive (blocked on stdin) until all have tried, so no lock goes stale.
    code = (
        "import sys, sqlalchemy as sa\n"
        "from keyturn.engine.locks import LockManager\n"
        "from keyturn.errors import RotationLocked\n"
        "eng = sa.create_engine(sys.argv[1])\n"
        "try:\n"
        "    LockManager(eng).acquire('k', sys.argv[2])\n"
        "    print('got', flush=True)\n"
        "except RotationLocked:\n"
        "    print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    url = engine.url.render_as_string(hide_password=False)
    procs = [subprocess.Popen([sys.executable, "-c", code, url, str(i) * 32], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for i in range(4)]
    try:
        answers = sorted(p.stdout.readline().strip() for p in procs)
    finally:
        for p in procs:
            p.communicate("", timeout=60)
    assert answers == ["got", "locked", "locked", "locked"]
