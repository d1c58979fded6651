"""One slow hash per verified IOS XE rotation (issue 14), against the simulator lab: a rotation proved
by the device's stored hash remembers, with the new version, what the device stored (a keyed digest,
`device_seen`); the next rotation's check of that secret is a compare while the device still shows it,
and a stored hash changed behind keyturn's back is checked in full (and rejected: no login is tried)."""

from __future__ import annotations

from pathlib import Path

from keyturn.config import Settings
from keyturn.engine.outcome import Outcome
from keyturn.engine.rotate import RotationEngine
from keyturn.vault import Vault, VersionState
from tests.integration.engine_lab import add_iosxe
from tests.lab_fixtures import running_lab


def _current_seen(vault: Vault, uid: str) -> str | None:
    return next(v.device_seen for v in vault.versions(uid) if v.state is VersionState.CURRENT)


async def test_rotations_remember_what_the_device_stores(tmp_path: Path) -> None:
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        vault = Vault.init(Settings(home=tmp_path / "home"))
        try:
            acct = add_iosxe(vault, lab.state, "iosxe-restconf", devices=1, users=1, admin=True)[0]
            assert _current_seen(vault, acct.uid) is None   # onboarded: never proved by keyturn
            engine = RotationEngine(vault, backoff=0.0)
            try:
                first = await engine.rotate(acct.uid)
                assert first.outcome is Outcome.ROTATED, first.reason
                seen = _current_seen(vault, acct.uid)
                assert seen is not None and len(seen) == 64
                secret = vault.secret(acct.uid)
                assert secret is not None and secret.reveal() not in seen
                second = await engine.rotate(acct.uid)
                assert second.outcome is Outcome.ROTATED, second.reason
                assert _current_seen(vault, acct.uid) not in (None, seen)  # the new secret's own
                # Someone changes the password on the device: the remembered digest does not vouch for
                # the vault's secret any more; the full check rejects it (the admin then reconciles).
                async with lab.control() as ctl:
                    await ctl.drift_iosxe(lab.state.iosxe[0].name, acct.login, "Changed-Behind-1!")
                third = await engine.rotate(acct.uid)
                steps = {s.step: s for s in engine.journal.steps(third.rotation_id)}
                assert steps["verify_current"].status.value == "failed", steps["verify_current"].message
                assert third.outcome is Outcome.ROTATED, third.reason
            finally:
                await engine.aclose()
        finally:
            vault.close()
