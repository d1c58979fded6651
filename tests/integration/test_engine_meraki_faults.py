"""Meraki auth users through the engine against the simulator: 429 storm, 302 on write, batch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keyturn.config import Settings
from keyturn.engine.batch import rotate_many
from keyturn.engine.outcome import Outcome
from keyturn.engine.rotate import RotationEngine
from keyturn.vault import Vault
from tests.integration.engine_lab import LabAccount, add_meraki
from tests.lab_fixtures import RunningLab, running_lab


def counter(tree: Any, name: str) -> int:
    """Sum of every `name` counter anywhere in the control API's /stats answer."""
    if isinstance(tree, dict):
        return sum(v if k == name and isinstance(v, int) else counter(v, name) for k, v in tree.items())
    if isinstance(tree, list):
        return sum(counter(v, name) for v in tree)
    return 0


def all_rotated(results: list) -> bool:
    return bool(results) and all(r.outcome is Outcome.ROTATED for r in results)


class Bench:
    def __init__(self, lab: RunningLab, vault: Vault) -> None:
        self.lab, self.vault = lab, vault
        self.accounts: list[LabAccount] = add_meraki(vault, lab.state)
        assert lab.state.meraki is not None
        self.org = lab.state.meraki.orgs[0].id

    async def rotate_all(self) -> list:
        engine = RotationEngine(self.vault, backoff=0.0)
        try:
            return await rotate_many(engine, [a.uid for a in self.accounts], concurrency=8, per_device=4)
        finally:
            await engine.aclose()


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async with running_lab(tmp_path, iosxe=0, meraki_orgs=1, users_per_network=4) as lab:
        vault = Vault.init(Settings(home=tmp_path / "home"))
        try:
            b = Bench(lab, vault)
            yield b
            async with lab.control() as ctl:
                calm = {"rate_limit_storm": 0, "redirect_on_write": False}
                await ctl.set_faults(b.org, calm, kind="meraki")
                for acct in b.accounts:
                    assert await acct.current_logs_in(vault, ctl), acct.login
        finally:
            vault.close()


async def test_meraki_users_rotate_and_verify_through_the_verifier(bench: Bench):
    results = await bench.rotate_all()
    assert all_rotated(results), [r.reason for r in results]


async def test_429_storm_is_absorbed_not_surfaced(bench: Bench):
    async with bench.lab.control() as ctl:
        await ctl.set_faults(bench.org, {"rate_limit_storm": 6, "retry_after": 1}, kind="meraki")
    results = await bench.rotate_all()
    assert all_rotated(results), [r.reason for r in results]
    async with bench.lab.control() as ctl:
        assert counter(await ctl.stats(), "storm_limited") == 6


async def test_302_on_write_keeps_the_put(bench: Bench):
    # Through the proxy, as in production: the redirect names a real Meraki shard host.
    bench.accounts = add_meraki(bench.vault, bench.lab.state, via_proxy=True)
    async with bench.lab.control() as ctl:
        await ctl.set_faults(bench.org, {"redirect_on_write": True}, kind="meraki")
    results = await bench.rotate_all()
    assert all_rotated(results), [r.reason for r in results]
    async with bench.lab.control() as ctl:
        assert counter(await ctl.stats(), "redirected") >= len(bench.accounts)
