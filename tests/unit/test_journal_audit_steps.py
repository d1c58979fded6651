"""Rotation steps are audit entries: written once, read back in order by the journal, older rotations'
`rotation_steps` rows still read, and the unhashed `kt_audit.rotation_id` column checked by `verify`.
On SQLite and on PostgreSQL (where the rotation row's UPDATE rides in the chain append's statement)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from keyturn.config import Settings
from keyturn.engine.journal import Journal, rotation_steps
from keyturn.engine.locks import LockManager
from keyturn.engine.outcome import STEPS, Outcome, StepStatus
from keyturn.holders import worker_label
from keyturn.vault import Vault
from keyturn.vault.storage import AuditRow
from tests.pg import pg_schema_url
from tests.unit.engine_world import World


def both_databases(tmp_path: Any, which: str) -> Iterator[World]:
    """`open_world` on SQLite, or on a throw-away PostgreSQL schema."""
    if which == "sqlite":
        vault = Vault.init(Settings(home=tmp_path / "home"))
        try:
            yield World(tmp_path, vault)
        finally:
            vault.close()
        return
    with pg_schema_url("kt_steps") as url:
        vault = Vault.init(Settings(home=tmp_path / "home", database_url=url))
        try:
            yield World(tmp_path, vault)
        finally:
            vault.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[World]:
    yield from both_databases(tmp_path, request.param)


async def rotate(world: World):
    engine = world.engine()
    try:
        return await engine.rotate(world.user)
    finally:
        await engine.aclose()


def _step_entries(world: World, rid: str) -> list[tuple[str, dict[str, object]]]:
    entries = [e for e in reversed(world.vault.audit.list(record_uid=world.user))
               if e.details.get("rotation_id") == rid and "worker" in e.details]
    return [(e.action, e.details) for e in entries]


async def test_every_step_is_one_audit_entry_in_order(world):
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED, result.reason
    steps = Journal(world.vault.engine).steps(result.rotation_id)
    assert [s.step for s in steps] == [s.value for s in STEPS]
    entries = _step_entries(world, result.rotation_id)
    assert [a for a, _ in entries] == [f"rotation.{s.step}" for s in steps]
    assert [(d["status"], d["message"]) for _, d in entries] == [(s.status.value, s.message) for s in steps]
    assert {s.worker for s in steps} == {worker_label()}
    assert all(s.at.tzinfo is not None for s in steps)
    assert entries[-1][1]["outcome"] == "rotated"            # the outcome entry keeps its details
    with world.vault.engine.connect() as conn:             # written once: no second copy
        assert conn.execute(sa.select(sa.func.count()).select_from(rotation_steps)).scalar() == 0
    row = Journal(world.vault.engine).get(result.rotation_id)
    assert row is not None and row.last_step == "audit" and not row.is_open
    assert LockManager(world.vault.engine).all() == []     # released with the outcome


async def test_the_failed_step_of_a_finish_has_its_own_entry(world):
    world.dev.set(down=True)
    result = await rotate(world)
    assert result.outcome is Outcome.FAILED
    steps = Journal(world.vault.engine).steps(result.rotation_id)
    assert [(s.step, s.status) for s in steps] == [
        ("lock", StepStatus.OK), ("verify_current", StepStatus.FAILED), ("audit", StepStatus.OK)]
    actions = [a for a, _ in _step_entries(world, result.rotation_id)]
    assert actions == ["rotation.lock", "rotation.verify_current", "rotation.audit"]


async def test_recovery_steps_are_entries_too(world):
    world.dev.set(ignore_changes=True)     # the new secret never verifies: unverified, left open
    world.dev.set(down_after_apply=1)
    first = await rotate(world)
    assert first.outcome is Outcome.UNVERIFIED, first.reason
    world.dev.set(down=False, ignore_changes=False)
    engine = world.engine()
    try:
        settled = await engine.recover()
    finally:
        await engine.aclose()
    assert [r.rotation_id for r in settled] == [first.rotation_id]
    steps = Journal(world.vault.engine).steps(first.rotation_id)
    assert steps[-1].step == "recover"
    recover = _step_entries(world, first.rotation_id)[-1]
    assert recover[0] == "rotation.recover" and recover[1]["outcome"] == settled[0].outcome.value
    assert recover[1]["reason"] == recover[1]["message"] == steps[-1].message


def test_rotations_journaled_before_the_upgrade_keep_their_steps(world):
    """A rotation whose first steps are `rotation_steps` rows (written before revision 0009) and whose
    later ones are audit entries (recovered after the upgrade) reads in that order."""
    journal, vault = Journal(world.vault.engine), world.vault
    journal.start(rotation_id="old1", record_uid=world.user, title="u", target="fake", lock_key="k")
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with vault.engine.begin() as conn:
        conn.execute(rotation_steps.insert(), [
            {"rotation_id": "old1", "step": "lock", "status": "ok", "message": "locked", "at": at,
             "worker": "old-host pid 1"},
            {"rotation_id": "old1", "step": "write_ahead", "status": "ok", "message": "stored", "at": at,
             "worker": "old-host pid 1"}])
    # An entry of that rotation from before 0009 (no worker): not a journal step, not shown twice.
    vault.audit.append("rotation.write_ahead", actor="engine", record_uid=world.user,
                       details={"rotation_id": "old1", "status": "ok", "message": "stored"})
    journal.step("old1", "recover", StepStatus.OK, "recovered", audit=vault.audit, record_uid=world.user,
                 actor="engine")
    steps = journal.steps("old1")
    assert [(s.step, s.worker) for s in steps] == [
        ("lock", "old-host pid 1"), ("write_ahead", "old-host pid 1"), ("recover", worker_label())]
    assert steps[0].at == at
    assert vault.audit.verify() is None


async def test_verify_reports_a_rotation_column_that_disagrees_with_its_entry(world):
    result = await rotate(world)
    vault = world.vault
    assert vault.audit.verify() is None
    with vault.engine.connect() as conn:
        ids = conn.execute(sa.select(AuditRow.id).where(AuditRow.rotation_id == result.rotation_id)
                           .order_by(AuditRow.id)).scalars().all()
    target = ids[2]

    def set_column(value: str | None) -> None:
        with vault.engine.begin() as conn:
            conn.execute(sa.update(AuditRow).where(AuditRow.id == target).values(rotation_id=value))

    set_column("another-rotation")          # a step moved to another rotation's log
    assert vault.audit.verify() == target
    set_column(None)                        # a step hidden from the journal
    assert vault.audit.verify() == target
    set_column(result.rotation_id)
    assert vault.audit.verify() is None
    # An entry that names no rotation must not get one either.
    first = vault.audit.list(action="vault.init")[0].id
    with vault.engine.begin() as conn:
        conn.execute(sa.update(AuditRow).where(AuditRow.id == first).values(rotation_id=result.rotation_id))
    assert vault.audit.verify() == first


async def test_an_open_rotation_without_a_pending_candidate_is_settled_first(world):
    """The journal's INSERT of a new rotation checks for an open one (no separate read): a rotation
    left `needs_attention` after its save failed (committed, nothing pending) is settled first."""
    world.dev.set(persist_fails=10)
    first = await rotate(world)
    assert first.outcome is Outcome.NEEDS_ATTENTION, first.reason
    assert "pending" not in world.states()
    journal = Journal(world.vault.engine)
    assert [r.id for r in journal.open_rotations(world.user)] == [first.rotation_id]
    world.dev.set(persist_fails=0)
    second = await rotate(world)
    assert second.outcome is Outcome.ROTATED, second.reason
    assert journal.open_rotations(world.user) == []
    settled = journal.get(first.rotation_id)
    assert settled is not None and settled.last_step == "recover"
    assert [r.id for r in journal.for_record(world.user)] == [second.rotation_id, first.rotation_id]


def test_a_free_lock_is_taken_in_one_statement(world):
    """The usual acquisition is the INSERT ... ON CONFLICT DO NOTHING alone, on PostgreSQL too (whose
    driver reports no row count for it: the insert says whether it took the lock by what it returns)."""
    from keyturn.errors import RotationLocked

    locks = LockManager(world.vault.engine)
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.split()[0].upper())

    sa.event.listen(world.vault.engine, "before_cursor_execute", record)
    try:
        token = locks.acquire("free/key", "r" * 32)
    finally:
        sa.event.remove(world.vault.engine, "before_cursor_execute", record)
    assert [s for s in seen if s != "BEGIN"] == ["INSERT"]
    holder = locks.holder("free/key")
    assert holder is not None and holder.token == token
    with pytest.raises(RotationLocked, match="being rotated"):
        locks.acquire("free/key", "s" * 32)
