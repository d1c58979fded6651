"""Requests per RESTCONF rotation (issue 14), against the simulator lab over real sockets: verify-current
reads the AAA configuration in one GET (`fields=aaa;login`), `change` takes the user entry that read
returned instead of reading it again, and the proofs stay what they were — the stored hash is read
before every login, after the change too, and with TACACS+ first no login is tried at all."""

from __future__ import annotations

from pathlib import Path

from keyturn.config import Settings
from keyturn.engine.outcome import Outcome
from keyturn.engine.rotate import RotationEngine
from keyturn.vault import Vault
from tests.integration.engine_lab import add_iosxe
from tests.lab_fixtures import running_lab


async def _rotate_counting(tmp_path: Path, aaa: str) -> tuple[int, int, str]:
    """Rotate one user once; (RESTCONF requests, failed logins on the device, how it was verified)."""
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        device = lab.state.iosxe[0].name
        async with lab.control() as ctl:
            await ctl.set_profile(device, {"aaa": aaa, "tacacs_timeout": 0})
            before = (await ctl.stats())["iosxe"][device]
        vault = Vault.init(Settings(home=tmp_path / "home"))
        try:
            acct = add_iosxe(vault, lab.state, "iosxe-restconf", devices=1, users=1, admin=True)[0]
            engine = RotationEngine(vault, backoff=0.0)
            try:
                result = await engine.rotate(acct.uid)
                assert result.outcome is Outcome.ROTATED, result.reason
                async with lab.control() as ctl:
                    after = (await ctl.stats())["iosxe"][device]
                    assert await acct.current_logs_in(vault, ctl)
            finally:
                await engine.aclose()
        finally:
            vault.close()
    return (after["restconf_requests"] - before["restconf_requests"], after["auth_failures"],
            result.reason)


async def test_local_aaa_rotation_takes_seven_requests_and_proves_both_ways(tmp_path: Path) -> None:
    # combined AAA read, stored hash, login | PATCH | save | stored hash, login
    requests, failures, reason = await _rotate_counting(tmp_path, "local")
    assert requests == 7
    assert failures == 0
    assert reason == "rotated and verified by login and stored hash"


async def test_tacacs_first_rotation_never_logs_in_and_takes_five_requests(tmp_path: Path) -> None:
    # combined AAA read, stored hash | PATCH | save | stored hash: the local user cannot log in
    requests, failures, reason = await _rotate_counting(tmp_path, "tacacs-first")
    assert requests == 5
    assert failures == 0
    assert reason == "rotated and verified by stored hash", reason
