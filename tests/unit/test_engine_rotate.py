"""The rotation state machine against a file-backed fake device (tests/unit/engine_world.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from keyturn.engine.journal import Journal, rotation_steps, rotations
from keyturn.engine.outcome import STEPS, Outcome
from keyturn.secret import Secret
from keyturn.vault import Field, VersionState
from tests.unit.engine_world import ADMIN, OLD, World, open_world


@pytest.fixture
def world(tmp_path):
    yield from open_world(tmp_path)


async def rotate(world: World, uid: str | None = None):
    engine = world.engine()
    try:
        return await engine.rotate(uid or world.user)
    finally:
        await engine.aclose()


async def test_happy_path_runs_the_ten_steps_in_order(world):
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED, result.reason
    assert world.current() == world.dev.password("netops") != OLD
    assert world.states() == ["current", "previous"]
    steps = [s.step for s in Journal(world.vault.engine).steps(result.rotation_id)]
    assert steps == [s.value for s in STEPS]
    actions = [e.action for e in world.vault.audit.list(record_uid=world.user)]
    assert {f"rotation.{s.value}" for s in STEPS} <= set(actions)
    assert world.dev.load()["saved"]["netops"] == world.current()   # persisted


async def test_refused_change_keeps_old_and_fails_candidate(world):
    world.dev.set(refuse=1)
    result = await rotate(world)
    assert result.outcome is Outcome.FAILED
    assert "refused" in result.reason and "old secret stays current" in result.reason
    assert world.current() == OLD == world.dev.password("netops")
    assert world.states() == ["failed", "current"]


async def test_unreachable_before_change_touches_nothing(world):
    world.dev.set(down=True)
    result = await rotate(world)
    assert result.outcome is Outcome.FAILED
    assert result.reason.startswith("device unreachable before change; will retry")
    assert world.states() == ["current"]       # no candidate was even generated
    assert world.dev.load()["changes"] == 0


async def test_current_rejected_without_admin_fails_with_hint(world):
    world.dev.set_user("netops", "changed-out-of-band")
    result = await rotate(world)
    assert result.outcome is Outcome.FAILED
    assert result.reason == (
        "current password rejected by the device (by login); set an admin credential to reconcile")
    assert world.states() == ["current"]


async def test_current_rejected_with_admin_reconciles(world):
    world.set_profile(world.user, admin=world.admin.uid)
    world.dev.set_user("netops", "changed-out-of-band")
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED, result.reason
    assert world.current() == world.dev.password("netops")


async def test_connection_dropped_after_apply_is_checked_not_assumed(world):
    world.dev.set(drop_after_apply=1)
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED, result.reason
    assert world.current() == world.dev.password("netops") != OLD
    steps = Journal(world.vault.engine).steps(result.rotation_id)
    assert [s.status.value for s in steps if s.step == "apply"] == ["unknown"]


async def test_change_not_applied_is_rolled_back(world):
    world.dev.set(ignore_changes=True)
    result = await rotate(world)
    assert result.outcome is Outcome.ROLLED_BACK
    assert world.current() == OLD == world.dev.password("netops")
    assert world.states() == ["failed", "current"]


async def test_rollback_failure_needs_attention_and_keeps_both(world):
    world.set_profile(world.user, admin=world.admin.uid)
    world.dev.set(scramble=True)
    result = await rotate(world)
    assert result.outcome is Outcome.NEEDS_ATTENTION
    assert world.states() == ["pending", "current"]
    # A person fixes the device to the candidate; recovery finishes forward.
    candidate = world.vault.version_secret(world.user, world.vault.versions(world.user)[0].version)
    world.dev.set(scramble=False)
    world.dev.set_user("netops", candidate.reveal())
    engine = world.engine()
    results = await engine.recover()
    await engine.aclose()
    assert [r.outcome for r in results] == [Outcome.ROTATED]
    assert world.current() == world.dev.password("netops")


async def test_verify_inconclusive_leaves_unverified_then_recovery_finishes(world):
    world.dev.set(down_after_apply=1)
    result = await rotate(world)
    assert result.outcome is Outcome.UNVERIFIED
    assert world.states() == ["pending", "current"]
    engine = world.engine()
    again = await engine.recover()
    assert [r.outcome for r in again] == [Outcome.UNVERIFIED]      # still down: both kept
    world.dev.set(down=False)
    finished = await engine.recover()
    assert [r.outcome for r in finished] == [Outcome.ROTATED]
    assert await engine.recover() == []                             # idempotent
    await engine.aclose()
    assert world.current() == world.dev.password("netops") != OLD
    assert world.states() == ["current", "previous"]


async def test_save_failure_needs_attention_and_recovery_saves(world):
    world.dev.set(persist_fails=5)
    result = await rotate(world)
    assert result.outcome is Outcome.NEEDS_ATTENTION
    assert "saving the configuration failed" in result.reason
    assert world.current() == world.dev.password("netops")        # the vault follows the device
    engine = world.engine()
    finished = await engine.recover()
    await engine.aclose()
    assert [r.outcome for r in finished] == [Outcome.ROTATED]
    assert world.dev.load()["saved"]["netops"] == world.current()


async def test_target_that_cannot_verify_is_rotated_unverifiable(world):
    world.set_profile(world.user, target="blind", admin=world.admin.uid)
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED_UNVERIFIABLE
    assert world.current() == world.dev.password("netops") != OLD


async def test_unconfirmed_change_on_blind_target_is_reapplied_by_recovery(world):
    world.set_profile(world.user, target="blind", admin=world.admin.uid)
    world.dev.set(down_after_apply=1)
    result = await rotate(world)
    assert result.outcome is Outcome.UNVERIFIED
    world.dev.set(down=False)
    engine = world.engine()
    finished = await engine.recover()
    await engine.aclose()
    assert [r.outcome for r in finished] == [Outcome.ROTATED_UNVERIFIABLE]
    assert world.current() == world.dev.password("netops")


async def test_missing_user_on_device_fails(world):
    uid = world.add_user("ghost", "ghost", "Ghost-Passw0rd", admin=world.admin.uid)
    result = await rotate(world, uid)
    assert result.outcome is Outcome.FAILED
    assert "does not exist" in result.reason
    assert world.states(uid) == ["failed", "current"]


async def test_missing_profile_is_a_clear_failure(world):
    rec = world.vault.add(type="pamUser", title="bare", fields=[Field("login", value=["x"])])
    result = await rotate(world, rec.uid)
    assert result.outcome is Outcome.FAILED
    assert "has no rotation profile" in result.reason and "keyturn rotation set" in result.reason


async def test_pending_candidate_is_settled_before_a_new_rotation(world):
    # A crashed rotation left a pending candidate that the device already has.
    world.dev.set_user("netops", "Candidate-Passw0rd")
    world.vault.add_version(world.user, Secret("Candidate-Passw0rd"), state=VersionState.PENDING,
                            rotation_id="f" * 32)
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED, result.reason
    assert world.current() == world.dev.password("netops")
    assert world.states() == ["current", "previous", "previous"]


async def test_journal_and_audit_hold_no_secret(world, caplog):
    caplog.set_level("DEBUG")
    world.dev.set(drop_after_apply=1)
    await rotate(world)
    world.dev.set(ignore_changes=True)
    await rotate(world)
    secrets = {OLD, ADMIN} | {world.vault.version_secret(world.user, v.version).reveal()
                              for v in world.vault.versions(world.user)}
    with world.vault.engine.connect() as conn:
        dump = repr(conn.execute(sa.select(rotations)).all())
        dump += repr(conn.execute(sa.select(rotation_steps)).all())
    audit = repr([(e.action, e.details) for e in world.vault.audit.list()])
    for secret in secrets:
        assert secret not in dump
        assert secret not in audit
        assert secret not in caplog.text
