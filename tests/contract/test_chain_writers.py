"""The audit chain under concurrent writers (PostgreSQL, and SQLite): two vault processes' worth of writers
(two engines, separate connection pools) appending at once leave one intact, gap-free chain, and a
rotation-like unit of work holds the chain lock only for its final audit append (issue 13: every
writer of an installation queues behind that lock)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from keyturn.config import Settings
from keyturn.secret import Secret
from keyturn.vault import Field, Vault, VersionState
from keyturn.vault.storage import WRITER_LOCK, AuditRow
from tests.pg import pg_schema_url

WRITERS = 2
ROUNDS = 15


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def vaults(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Vault, Vault]]:
    """Two vaults on one database, as two processes have them (engines, pools and each audit log's
    remembered head of their own: SQLite's append path trusts that head only after checking it)."""
    home = tmp_path_factory.mktemp("chain-writers")
    if request.param == "sqlite":
        first, second = Vault.init(Settings(home=home)), Vault.open(Settings(home=home))
        yield first, second
        second.close()
        first.close()
        return
    with pg_schema_url("kt_chain") as url:
        first = Vault.init(Settings(home=home, database_url=url))
        second = Vault.open(Settings(home=home, database_url=url))
        yield first, second
        second.close()
        first.close()


def _user(vault: Vault, title: str) -> str:
    return vault.add(type="pamUser", title=title, fields=[
        Field("login", None, ["admin"]), Field("password", None, [Secret(f"{title}-0")])]).uid


def test_two_concurrent_writers_keep_the_chain_intact(vaults: tuple[Vault, Vault]) -> None:
    uids = [_user(v, f"writer-{i}") for i, v in enumerate(vaults)]
    before = vaults[0].audit.head()
    assert before is not None
    gate = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write(vault: Vault, uid: str) -> None:
        try:
            gate.wait(timeout=30)
            for n in range(ROUNDS):
                # A rotation's write-ahead and commit (batched units), and a plain append in between.
                with vault.unit(batch_audit=True):
                    version = vault.add_version(uid, Secret(f"{uid}-{n}"), rotation_id=f"r{n}")
                    vault.audit.append("bench.note", actor="test", record_uid=uid, details={"n": n})
                vault.audit.append("bench.plain", actor="test", record_uid=uid, details={"n": n})
                with vault.unit(batch_audit=True):
                    vault.promote(uid, version)
        except BaseException as exc:  # reported below, with the thread's work
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(v, u)) for v, u in zip(vaults, uids, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    for vault in vaults:
        assert vault.audit.verify() is None
    with vaults[0].storage.session() as s:
        ids = list(s.scalars(sa.select(AuditRow.id).where(AuditRow.id > before[0]).order_by(AuditRow.id)))
    # version.add + bench.note + bench.plain + version.promote per round and writer, no gap, no duplicate
    assert ids == list(range(before[0] + 1, before[0] + 1 + WRITERS * ROUNDS * 4))
    for vault, uid in zip(vaults, uids, strict=True):
        states = [v.state for v in vault.versions(uid)]
        assert states.count(VersionState.CURRENT) == 1
        assert vault.secret(uid).reveal() == f"{uid}-{ROUNDS - 1}"  # type: ignore[union-attr]


def test_a_unit_holds_the_chain_lock_only_for_its_final_append(vaults: tuple[Vault, Vault]) -> None:
    """While one unit of work has promoted a version (record lock held) but not yet ended, another
    process's writer appends to the chain without waiting for it; the unit's own entries follow."""
    holder, other = vaults
    if holder.storage.dialect == "sqlite":
        pytest.skip("SQLite's writer lock is the whole write transaction (BEGIN IMMEDIATE)")
    uid = _user(holder, "held-open")
    version = holder.add_version(uid, Secret("held-open-1"), rotation_id="r-held")
    promoted, appended = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with holder.unit(batch_audit=True):
                holder.promote(uid, version)
                promoted.set()
                if not appended.wait(timeout=60):
                    raise AssertionError("the other writer waited for this unit's chain lock")
        except BaseException as exc:
            errors.append(exc)
            promoted.set()

    holds_before = WRITER_LOCK.holds
    t = threading.Thread(target=hold)
    t.start()
    assert promoted.wait(timeout=60)
    other.audit.append("bench.other", actor="test")
    appended.set()
    t.join(timeout=60)
    assert errors == []
    assert WRITER_LOCK.holds >= holds_before + 2   # each transaction counted its hold of the lock
    entries = holder.audit.list(limit=2)
    assert [e.action for e in entries] == ["version.promote", "bench.other"]
    assert holder.audit.verify() is None
