"""Start an in-process simulator lab for a test. Import and use either form:

    from tests.lab_fixtures import RunningLab, running_lab, small_lab_fixture
    small_lab = small_lab_fixture          # bind the fixture under its name (keeps ruff's F811 quiet)

    async def test_x(small_lab: RunningLab) -> None:          # 3 IOS XE devices, 1 Meraki org, seed 1234
        dev = small_lab.state.iosxe[0]                          # ports, initial credentials (client.LabState)
        async with small_lab.control() as ctl:                 # control API client
            assert await ctl.verify_iosxe(dev.name, dev.admin.username, dev.admin.password)

    async def test_y(tmp_path: Path) -> None:
        async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, ssh=False) as lab: ...

Every listener binds an ephemeral port on 127.0.0.1; the lab shares the test's event loop, so talk to it
with async clients only. `lab.lab` is the `Lab` object itself (device models, fault switches) for
assertions the control API does not offer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keyturn.sim.client import ControlClient, LabState
from keyturn.sim.lab import Lab, LabOptions, make_plan


@dataclass
class RunningLab:
    lab: Lab
    state: LabState
    state_file: Path

    def control(self) -> ControlClient:
        return ControlClient(self.state.control_url)


@asynccontextmanager
async def running_lab(
    tmp_path: Path, *, iosxe: int = 3, meraki_orgs: int = 1, networks_per_org: int = 1,
    users_per_network: int = 2, users_per_device: int = 2, seed: int | None = 1234, **options: Any,
) -> AsyncIterator[RunningLab]:
    """A started lab (state file `tmp_path/lab.json`); `options` go to `LabOptions` (ssh=False, ...)."""
    plan = make_plan(iosxe=iosxe, meraki_orgs=meraki_orgs, networks_per_org=networks_per_org,
                     users_per_network=users_per_network, users_per_device=users_per_device, seed=seed)
    state_file = tmp_path / "lab.json"
    lab = Lab(plan, LabOptions(state_file=state_file, **options))
    await lab.start()
    try:
        yield RunningLab(lab=lab, state=LabState.load(state_file), state_file=state_file)
    finally:
        await lab.stop()


@pytest.fixture(name="small_lab")
async def small_lab_fixture(tmp_path: Path) -> AsyncIterator[RunningLab]:
    """3 IOS XE devices (RESTCONF + SSH) and 1 Meraki org with 1 network of 2 users, seed 1234."""
    async with running_lab(tmp_path) as running:
        yield running
