"""Group commit (`keyturn.engine.group_commit`): phases ready together share a transaction; one that
raises costs the others nothing (the group is rolled back and each runs again alone).

The transaction here is an in-memory fake with the one property that matters: all or nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from keyturn.engine.group_commit import GroupCommit


class FakeDatabase:
    """A dict written all-or-nothing per transaction; records each transaction's size."""

    def __init__(self, *, fail_commit: Callable[[int], bool] = lambda _n: False) -> None:
        self.rows: dict[str, int] = {}
        self.transactions: list[int] = []
        self.fail_commit = fail_commit

    def transaction(self, fns: Sequence[Callable[[], Any]]) -> list[Any]:
        before = dict(self.rows)
        try:
            results = [fn() for fn in fns]
            if self.fail_commit(len(fns)):
                raise OSError("disk I/O error at commit")
        except BaseException:
            self.rows = before
            raise
        self.transactions.append(len(fns))
        return results


def write(db: FakeDatabase, key: str, value: int) -> Callable[[], int]:
    def fn() -> int:
        db.rows[key] = value
        return value
    return fn


def boom(db: FakeDatabase, key: str) -> Callable[[], int]:
    def fn() -> int:
        db.rows[key] = -1
        raise LookupError(f"no record {key}")
    return fn


async def _run_held(pool: ThreadPoolExecutor, group: GroupCommit,
                    fns: list[Callable[[], int]]) -> list[Any]:
    """Start every phase while the one worker is busy, so they all queue up, then let it go."""
    busy = threading.Event()
    pool.submit(busy.wait, 5)
    tasks = [asyncio.ensure_future(group.run(fn)) for fn in fns]
    await asyncio.sleep(0.05)
    busy.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_phases_ready_together_commit_in_one_transaction() -> None:
    db = FakeDatabase()
    with ThreadPoolExecutor(max_workers=1) as pool:
        group = GroupCommit(db.transaction, pool)

        async def main() -> list[Any]:
            first = await group.run(write(db, "warm", 0))   # a lone phase: a group of one
            assert first == 0
            return await _run_held(pool, group, [write(db, f"k{i}", i) for i in range(10)])

        results = asyncio.run(main())
    assert results == list(range(10))
    assert db.rows == {"warm": 0, **{f"k{i}": i for i in range(10)}}
    assert db.transactions == [1, 10]
    assert group.phases == 11 and group.replays == 0


def test_a_failing_phase_gets_its_error_and_the_others_commit() -> None:
    db = FakeDatabase()
    with ThreadPoolExecutor(max_workers=1) as pool:
        group = GroupCommit(db.transaction, pool)
        fns = [write(db, "a", 1), boom(db, "b"), write(db, "c", 3)]
        results = asyncio.run(_run_held(pool, group, fns))
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], LookupError) and "no record b" in str(results[1])
    assert db.rows == {"a": 1, "c": 3}          # b's write rolled back, nothing written twice
    assert db.transactions == [1, 1] and group.replays == 1


def test_a_commit_that_fails_for_the_group_fails_each_phase_alone() -> None:
    # The group's commit fails (as a disk would); alone, each phase commits.
    db = FakeDatabase(fail_commit=lambda n: n > 1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        group = GroupCommit(db.transaction, pool)
        results = asyncio.run(_run_held(pool, group, [write(db, f"k{i}", i) for i in range(4)]))
    assert results == [0, 1, 2, 3]
    assert db.rows == {f"k{i}": i for i in range(4)}
    assert all(n == 1 for n in db.transactions)


def test_a_database_that_refuses_every_commit_fails_every_phase() -> None:
    db = FakeDatabase(fail_commit=lambda _n: True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        group = GroupCommit(db.transaction, pool)
        results = asyncio.run(_run_held(pool, group, [write(db, f"k{i}", i) for i in range(3)]))
    assert all(isinstance(r, OSError) for r in results)
    assert db.rows == {} and db.transactions == []


def test_a_fatal_error_reaches_every_waiter() -> None:
    class Fatal(BaseException):
        pass

    def fatal() -> int:
        raise Fatal("interpreter going down")

    db = FakeDatabase()
    with ThreadPoolExecutor(max_workers=1) as pool:
        group = GroupCommit(db.transaction, pool)

        async def main() -> list[Any]:
            busy = threading.Event()
            pool.submit(busy.wait, 5)
            tasks = [asyncio.ensure_future(group.run(fn)) for fn in (write(db, "a", 1), fatal)]
            await asyncio.sleep(0.05)
            busy.set()
            done, _ = await asyncio.wait(tasks, timeout=5)
            assert len(done) == 2   # nobody waits forever
            return [t.exception() for t in tasks]

        errors = asyncio.run(main())
    assert all(isinstance(e, Fatal) for e in errors)   # one transaction: neither committed
    assert db.rows == {}


def test_concurrent_workers_run_every_phase_once() -> None:
    db = FakeDatabase()
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def counted(key: str) -> Callable[[], str]:
        def fn() -> str:
            with lock:
                calls[key] = calls.get(key, 0) + 1
            return key
        return fn

    with ThreadPoolExecutor(max_workers=4) as pool:
        group = GroupCommit(db.transaction, pool, limit=3, parallel=4)

        async def main() -> list[Any]:
            return await asyncio.gather(*(group.run(counted(f"p{i}")) for i in range(200)))

        results = asyncio.run(main())
    assert results == [f"p{i}" for i in range(200)]
    assert calls == {f"p{i}": 1 for i in range(200)}
    assert max(db.transactions) <= 3


def test_limit_and_parallel_must_be_positive() -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(ValueError):
            GroupCommit(lambda fns: [], pool, limit=0)
        with pytest.raises(ValueError):
            GroupCommit(lambda fns: [], pool, parallel=0)


def test_more_than_a_group_is_written_in_groups_of_at_most_limit() -> None:
    db = FakeDatabase()
    with ThreadPoolExecutor(max_workers=1) as pool:
        group = GroupCommit(db.transaction, pool, limit=4)
        results = asyncio.run(_run_held(pool, group, [write(db, f"k{i}", i) for i in range(10)]))
    assert results == list(range(10))
    assert db.rows == {f"k{i}": i for i in range(10)}
    assert db.transactions == [4, 4, 2]


# --- the engine's phases, on a real vault ---------------------------------------------------------------

@pytest.fixture
def world(tmp_path: Any) -> Any:
    from tests.unit.engine_world import open_world

    yield from open_world(tmp_path)


async def _held_batch(world: Any, refs: list[str]) -> tuple[list[Any], GroupCommit]:
    """`rotate_many(refs)` while another process's writer holds the database for a moment: the first
    phase written waits for it, and the phases queued meanwhile are written together after it."""
    import sqlite3

    from keyturn.engine.batch import rotate_many

    other = sqlite3.connect(world.vault.engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    engine = world.engine()
    try:
        batch = asyncio.ensure_future(rotate_many(engine, refs, per_device=len(refs)))
        await asyncio.sleep(0.5)
        other.execute("ROLLBACK")
        return await batch, engine.group_commit
    finally:
        other.close()
        await engine.aclose()


def _users(world: Any) -> tuple[list[str], list[str]]:
    users, logins = [world.user], ["netops"]
    for i in range(5):
        world.dev.set_user(f"user{i}", f"Initial-Passw0rd-{i}")
        users.append(world.add_user(f"u-extra-{i}", f"user{i}", f"Initial-Passw0rd-{i}"))
        logins.append(f"user{i}")
    return users, logins


def _all_rotated(world: Any, users: list[str], logins: list[str], results: list[Any]) -> None:
    from keyturn.engine.outcome import Outcome

    assert all(r.outcome is Outcome.ROTATED for r in results), [r.reason for r in results]
    assert world.vault.audit.verify() is None      # one chain, every entry in place
    for uid, login in zip(users, logins, strict=True):
        assert world.vault.secret(uid).reveal() == world.dev.password(login)
        assert world.states(uid).count("current") == 1 and "pending" not in world.states(uid)


async def test_a_batch_writes_the_phases_ready_together_in_one_transaction(world: Any) -> None:
    users, logins = _users(world)
    results, stats = await _held_batch(world, users)
    _all_rotated(world, users, logins, results)
    assert stats.replays == 0 and stats.phases > stats.groups


async def test_one_bad_reference_in_a_group_costs_the_others_nothing(world: Any) -> None:
    from keyturn.engine.outcome import Outcome

    users, logins = _users(world)
    results, stats = await _held_batch(world, [*users[:3], "no-such-record", *users[3:]])
    assert results[3].outcome is Outcome.FAILED and "no-such-record" in results[3].reason
    assert stats.replays >= 1                      # its group ran again phase by phase
    _all_rotated(world, users, logins, results[:3] + results[4:])


def test_a_phase_refused_by_a_shut_down_executor_never_runs_later() -> None:
    db = FakeDatabase()
    pool = ThreadPoolExecutor(max_workers=1)
    group = GroupCommit(db.transaction, pool)
    pool.shutdown()

    async def main() -> None:
        with pytest.raises(RuntimeError):
            await group.run(write(db, "late", 1))

    asyncio.run(main())
    with ThreadPoolExecutor(max_workers=1) as other:   # a later drain finds nothing left to write
        other.submit(group._drain).result()
    assert db.rows == {} and db.transactions == []
