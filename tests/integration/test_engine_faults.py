"""The engine against the simulator lab, one test per fault; afterwards the vault's current secret
must log in on the device (control API `/verify`) in every case."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keyturn.config import Settings
from keyturn.engine.outcome import Outcome
from keyturn.engine.profile import set_profile
from keyturn.engine.rotate import RotationEngine, TargetPool
from keyturn.secret import Secret
from keyturn.targets.registry import create_target
from keyturn.vault import Field, Vault
from tests.integration.engine_lab import LabAccount, add_iosxe
from tests.lab_fixtures import RunningLab, running_lab

FAST: dict[str, dict[str, Any]] = {
    "iosxe-restconf": {"timeout": 2.0, "save_timeout": 5.0, "retries": 2, "backoff": 0.0},
}


class Bench:
    def __init__(self, lab: RunningLab, vault: Vault) -> None:
        self.lab = lab
        self.vault = vault
        self.accounts = add_iosxe(vault, lab.state, "iosxe-restconf", devices=1, users=1, admin=False)
        self.acct = self.accounts[0]
        self.dev = lab.state.iosxe[0]

    def engine(self) -> RotationEngine:
        pool = TargetPool(lambda kind: create_target(kind, **FAST.get(kind, {})))
        return RotationEngine(self.vault, targets=pool, backoff=0.0)

    async def rotate(self, uid: str | None = None):
        engine = self.engine()
        try:
            return await engine.rotate(uid or self.acct.uid)
        finally:
            await engine.aclose()

    async def recover(self):
        engine = self.engine()
        try:
            return await engine.recover()
        finally:
            await engine.aclose()

    async def faults(self, **switches: Any) -> None:
        async with self.lab.control() as ctl:
            await ctl.set_faults(self.dev.name, switches)

    def with_admin(self, acct: LabAccount | None = None) -> None:
        acct = acct or self.acct
        profile = self.vault.get(acct.uid).meta["rotation"]
        admin = self.vault.find(title=f"{self.dev.name}-iosxe-restconf-admin")[0]
        set_profile(self.vault, acct.uid, target=profile["target"], resource=profile["resource"],
                    admin=admin.uid, max_attempts=1)

    async def assert_current_logs_in(self) -> None:
        async with self.lab.control() as ctl:
            await ctl.set_faults(self.dev.name, {"down": False, "error_rate": 0.0, "timeout_rate": 0.0})
            for acct in self.accounts:
                ok = await acct.current_logs_in(self.vault, ctl)
                assert ok, f"{acct.login}: vault secret does not log in"


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1) as lab:
        vault = Vault.init(Settings(home=tmp_path / "home"))
        try:
            b = Bench(lab, vault)
            yield b
            await b.assert_current_logs_in()
        finally:
            vault.close()


async def test_rotates_and_verifies(bench: Bench):
    result = await bench.rotate()
    assert result.outcome is Outcome.ROTATED, result.reason
    assert bench.vault.secret(bench.acct.uid).reveal() != bench.dev.users[0].password


async def test_device_unreachable(bench: Bench):
    await bench.faults(down=True)
    result = await bench.rotate()
    assert result.outcome is Outcome.FAILED
    assert result.reason.startswith("device unreachable before change; will retry")
    assert [str(v.state) for v in bench.vault.versions(bench.acct.uid)] == ["current"]


async def test_device_times_out(bench: Bench):
    await bench.faults(timeout_rate=1.0)
    result = await bench.rotate()
    assert result.outcome is Outcome.FAILED
    assert "unreachable before change" in result.reason


async def test_device_answers_5xx(bench: Bench):
    await bench.faults(error_rate=1.0)
    result = await bench.rotate()
    assert result.outcome is Outcome.FAILED


async def test_connection_dropped_after_change_applied(bench: Bench):
    await bench.faults(drop_after_apply=1)
    result = await bench.rotate()
    assert result.outcome is Outcome.ROTATED, result.reason


async def test_password_refused_by_device(bench: Bench):
    await bench.faults(refuse_passwords=1)
    result = await bench.rotate()
    assert result.outcome is Outcome.FAILED
    assert [str(v.state) for v in bench.vault.versions(bench.acct.uid)] == ["failed", "current"]


async def test_current_password_wrong_without_admin(bench: Bench):
    async with bench.lab.control() as ctl:
        await ctl.drift_iosxe(bench.dev.name, bench.acct.login, "Drifted-0ut-of-band")
    result = await bench.rotate()
    assert result.outcome is Outcome.FAILED
    assert "set an admin credential to reconcile" in result.reason
    # The vault still holds the old value, which no longer logs in; the admin path repairs it below.
    bench.with_admin()
    fixed = await bench.rotate()
    assert fixed.outcome is Outcome.ROTATED, fixed.reason


async def test_current_password_wrong_with_admin_reconciles(bench: Bench):
    bench.with_admin()
    async with bench.lab.control() as ctl:
        await ctl.drift_iosxe(bench.dev.name, bench.acct.login, "Drifted-0ut-of-band")
    result = await bench.rotate()
    assert result.outcome is Outcome.ROTATED, result.reason


async def test_user_missing_on_device(bench: Bench):
    admin = bench.vault.find(title=f"{bench.dev.name}-iosxe-restconf-admin")[0]
    resource = bench.vault.get(bench.acct.uid).meta["rotation"]["resource"]
    ghost = bench.vault.add(type="pamUser", title="ghost", fields=[
        Field("login", None, ["ghost"]), Field("password", None, [Secret("Ghost-Passw0rd-1")])])
    set_profile(bench.vault, ghost.uid, target="iosxe-restconf", resource=resource, admin=admin.uid)
    result = await bench.rotate(ghost.uid)
    assert result.outcome is Outcome.FAILED
    assert "ghost" in result.reason


async def test_committed_rotation_survives_a_reboot(bench: Bench):
    bench.with_admin()
    await bench.faults(drop_after_apply=1)
    engine = bench.engine()
    try:
        first = await engine.rotate(bench.acct.uid)
    finally:
        await engine.aclose()
    assert first.outcome is Outcome.ROTATED
    # A committed rotation survives a reboot only because it was saved; prove it.
    async with bench.lab.control() as ctl:
        await ctl.reboot(bench.dev.name)
        assert await bench.acct.current_logs_in(bench.vault, ctl)


async def test_drift_both_rejected_is_reconciled_by_recovery(bench: Bench):
    bench.with_admin()
    await bench.faults(down=False)
    async with bench.lab.control() as ctl:
        # Leave a pending candidate (as a crash would), then drift the device to something else.
        cand = Secret("Cand1date-Passw0rd")
        bench.vault.add_version(bench.acct.uid, cand, rotation_id="e" * 32)
        await ctl.drift_iosxe(bench.dev.name, bench.acct.login, "Drifted-0ut-of-band")
    results = await bench.recover()
    assert [r.outcome for r in results] == [Outcome.FAILED]
    assert "set again through the admin credential" in results[0].reason


async def test_no_plaintext_in_logs_audit_or_journal(bench: Bench, caplog):
    caplog.set_level(logging.DEBUG)
    await bench.faults(drop_after_apply=1)
    await bench.rotate()
    await bench.faults(refuse_passwords=1)
    await bench.rotate()
    values = [bench.vault.version_secret(bench.acct.uid, v.version).reveal()
              for v in bench.vault.versions(bench.acct.uid)]
    import sqlalchemy as sa
    with bench.vault.engine.connect() as conn:
        dump = " ".join(repr(conn.execute(sa.text(f"SELECT * FROM {t}")).all())
                        for t in ("rotations", "rotation_steps", "rotation_locks"))
    audit = repr([(e.action, e.details) for e in bench.vault.audit.list()])
    for value in values:
        assert value not in caplog.text and value not in dump and value not in audit
