"""Crash safety: kill the engine (os._exit, like kill -9) after every step boundary, then recover.

The engine runs in a subprocess against a file-backed fake device (tests/unit/engine_world.py), so the
device outlives the killed process. After recovery the vault's current secret must log in on the
device, no candidate may stay pending and no lock may stay behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.engine.hooks import KILL_ENV, KILL_EXIT_CODE
from keyturn.engine.journal import Journal
from keyturn.engine.locks import LockManager
from keyturn.engine.outcome import STEPS
from keyturn.engine.rotate import RotationEngine, TargetPool
from keyturn.vault import Vault
from tests.unit.engine_world import World

ROOT = Path(__file__).resolve().parents[2]
DRIVER = """
import asyncio, sys
from keyturn.config import Settings
from keyturn.vault import Vault
from keyturn.engine.rotate import RotationEngine, TargetPool
from tests.unit.engine_world import make_factory

async def main():
    vault = Vault.open(Settings(home=sys.argv[1]))
    targets = make_factory()
    engine = RotationEngine(vault, targets=TargetPool(lambda kind: targets[kind]), backoff=0.0)
    result = await engine.rotate(sys.argv[2])
    print(result.outcome.value)

asyncio.run(main())
"""


@pytest.mark.parametrize("target", ["fake", "blind"])
@pytest.mark.parametrize("step", [s.value for s in STEPS])
async def test_kill_at_step_then_recover(tmp_path, step, target):
    home = tmp_path / "home"
    vault = Vault.init(Settings(home=home))
    try:
        world = World(tmp_path, vault)
        world.set_profile(world.user, target=target, admin=world.admin.uid)
        env = {**os.environ, KILL_ENV: step, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", DRIVER, str(home), world.user], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == KILL_EXIT_CODE, proc.stderr[-2000:]

        engine = RotationEngine(vault, targets=TargetPool(lambda kind: world.targets[kind]), backoff=0.0)
        try:
            await engine.recover()
            assert await engine.recover() == []        # idempotent: nothing left the second time
        finally:
            await engine.aclose()
        assert world.current() == world.dev.password("netops")
        assert "pending" not in world.states()
        assert Journal(vault.engine).open_rotations() == []
        assert LockManager(vault.engine).all() == []
    finally:
        vault.close()


BATCH_DRIVER = """
import asyncio, sys
from keyturn.config import Settings
from keyturn.vault import Vault
from keyturn.engine.batch import rotate_many
from keyturn.engine.rotate import RotationEngine, TargetPool
from tests.unit.engine_world import make_factory

async def main():
    vault = Vault.open(Settings(home=sys.argv[1]))
    targets = make_factory()
    engine = RotationEngine(vault, targets=TargetPool(lambda kind: targets[kind]), backoff=0.0)
    refs = sys.argv[2:]
    await rotate_many(engine, refs, per_device=len(refs))

asyncio.run(main())
"""


@pytest.mark.parametrize("step", [s.value for s in STEPS])
async def test_kill_a_batch_whose_phases_share_transactions_then_recover(tmp_path, step):
    # Concurrent rotations of one batch write their phases in shared transactions (group commit): the
    # first to pass `step` kills the process, wherever the others are; recovery settles every one.
    home = tmp_path / "home"
    vault = Vault.init(Settings(home=home))
    try:
        world = World(tmp_path, vault)
        users, logins = [world.user], ["netops"]
        for i in range(5):
            world.dev.set_user(f"user{i}", f"Initial-Passw0rd-{i}")
            users.append(world.add_user(f"u-extra-{i}", f"user{i}", f"Initial-Passw0rd-{i}",
                                        admin=world.admin.uid))
            logins.append(f"user{i}")
        world.set_profile(world.user, admin=world.admin.uid)
        env = {**os.environ, KILL_ENV: step, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", BATCH_DRIVER, str(home), *users], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == KILL_EXIT_CODE, proc.stderr[-2000:]

        engine = RotationEngine(vault, targets=TargetPool(lambda kind: world.targets[kind]), backoff=0.0)
        try:
            await engine.recover()
            assert await engine.recover() == []
        finally:
            await engine.aclose()
        for uid, login in zip(users, logins, strict=True):
            assert world.current(uid) == world.dev.password(login), login
            assert "pending" not in world.states(uid)
        assert Journal(vault.engine).open_rotations() == []
        assert LockManager(vault.engine).all() == []
        assert vault.audit.verify() is None
    finally:
        vault.close()
