"""Lockouts on a real-shaped device: keyturn never adds failed logins past its budget, and a user the
device has locked out (max-fail) is reported in the device's own words, not as a wrong secret.

The lab device has `aaa local authentication attempts max-fail 2` (local AAA, so `verify=auto` proves by
login). The user is locked out from outside before keyturn starts (someone mistyped twice).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from keyturn.config import Settings
from keyturn.engine.outcome import Outcome
from keyturn.engine.rotate import RotationEngine
from keyturn.sim.onboard import onboard_iosxe
from keyturn.vault import Vault
from tests.lab_fixtures import running_lab


@asynccontextmanager
async def one_device(tmp_path: Path, vault: Vault) -> AsyncIterator[tuple[Any, Any, Any, Any, Any]]:
    """A lab of one device with `max-fail 2` (local AAA) and one user onboarded for `iosxe-ssh`:
    (lab, its state entry, the device model, the user, the onboarded account)."""
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1,
                           profile={"max_fail": 2}) as lab:
        dev = lab.state.iosxe[0]
        [acct] = onboard_iosxe(vault, lab.state, target="iosxe-ssh")
        yield lab, dev, lab.lab.device(dev.name).device, dev.users[0], acct


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    with Vault.init(Settings(home=tmp_path / "home")) as v:
        yield v


async def test_locked_out_user_is_reported_with_the_device_words(tmp_path: Path, vault: Vault) -> None:
    async with one_device(tmp_path, vault) as (lab, dev, model, user, acct):
        for _ in range(2):                                   # two mistyped logins lock the user
            assert model.authenticate(user.username, "mistyped") is None
        assert model.local_user_locked(user.username)
        before = lab.lab.stats()["iosxe"][dev.name]["failed_logins"]

        engine = RotationEngine(vault, backoff=0.0)
        try:
            result = await engine.rotate(acct.uid)
        finally:
            await engine.aclose()

        assert result.outcome is Outcome.NEEDS_ATTENTION, result.reason
        assert f"the device reports {user.username!r} locked out (`show aaa local user lockout`: " \
            f"{user.username} " in result.reason
        assert f"clear aaa local user lockout username {user.username}" in result.reason
        new = vault.secret(acct.uid)
        assert new is not None and new.reveal() != user.password
        assert lab.lab.verify_iosxe(dev.name, user.username, new.reveal()) == (True, True)
        # keyturn's own cost: none — the admin session saw the lock before any login was tried, and the
        # stored hash proved both secrets.
        assert lab.lab.stats()["iosxe"][dev.name]["failed_logins"] == before


async def test_recovery_costs_no_failed_login(tmp_path: Path, vault: Vault) -> None:
    """A crash after apply leaves a pending candidate; recovery settles it by stored hash only."""
    from keyturn.secret import Secret
    from keyturn.vault.versions import VersionState

    async with one_device(tmp_path, vault) as (lab, dev, model, user, acct):
        # The state a crash between apply and commit leaves: the device has the candidate, the vault
        # holds it as pending.
        candidate = "Cand1date-Secret-77"
        vault.add_version(acct.uid, Secret(candidate), state=VersionState.PENDING, rotation_id="crashed")
        model.set_user(user.username, kind="secret", clear=candidate)
        before = lab.lab.stats()["iosxe"][dev.name]["failed_logins"]

        engine = RotationEngine(vault, backoff=0.0)
        try:
            results = await engine.recover()
        finally:
            await engine.aclose()
        assert [r.outcome for r in results] == [Outcome.ROTATED], [r.reason for r in results]
        assert vault.secret(acct.uid).reveal() == candidate  # type: ignore[union-attr]
        assert lab.lab.stats()["iosxe"][dev.name]["failed_logins"] == before
