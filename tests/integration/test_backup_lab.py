"""Issue 18's disaster drill on a simulator lab: a SQLite vault backed up (`keyturn vault backup`, its own
process) while `keyturn rotate --all` runs in another process against 20 IOS XE RESTCONF devices, then
restored into a fresh PostgreSQL vault (`keyturn vault restore`), settled (`keyturn recover`) — and
every account's secret there logs in on the lab (the control API's /verify, which reads the device's
user store). The reverse direction (PostgreSQL → SQLite) is checked on the settled vault.

A backup is a point in time: an account whose rotation began after it was taken has, in the backup,
the secret it had before — checked to be exactly that — and the restored vault rotates it again (with
the device admin, which `rotate --all` leaves alone) before the final check.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.vault import Vault
from tests.integration.engine_lab import LabAccount, add_iosxe
from tests.lab_fixtures import RunningLab, running_lab
from tests.pg import pg_schema_url

DEVICES = 20
pytestmark = pytest.mark.timeout(600)


async def keyturn(home: Path, *args: str, database_url: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(home)
    if database_url:
        env["KEYTURN_DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "keyturn.cli.main", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return int(proc.returncode or 0), out.decode(), err.decode()


def finished_rotations(home: Path) -> int:
    with sqlite3.connect(f"file:{home / 'keyturn.db'}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute("SELECT count(*) FROM rotations WHERE finished_at IS NOT NULL").fetchone()[0])


def secrets_and_rotated(home: Path, url: str | None,
                        users: list[LabAccount]) -> tuple[dict[str, str], set[str]]:
    """Each account's current secret in the vault, and the accounts its journal holds a rotation of."""
    with Vault.open(Settings(home=home, database_url=url)) as v:
        current = {a.uid: v.secret(a.uid).reveal() for a in users}  # type: ignore[union-attr]
        rotated = {a.uid for a in users if v.versions(a.uid) and len(v.versions(a.uid)) > 1}
    return current, rotated


async def all_log_in(lab: RunningLab, users: list[LabAccount], secrets: dict[str, str]) -> list[str]:
    async with lab.control() as ctl:
        return [a.login + "@" + str(a.device) for a in users if not await a.logs_in(ctl, secrets[a.uid])]


async def test_backup_under_rotate_all_restores_into_postgresql_and_every_secret_logs_in(
        tmp_path: Path) -> None:
    async with running_lab(tmp_path, iosxe=DEVICES, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        src = tmp_path / "sqlite-home"
        with Vault.init(Settings(home=src)) as v:
            users = add_iosxe(v, lab.state, "iosxe-restconf")
        before = {a.uid: next(u.password for d in lab.state.iosxe for u in d.users
                              if d.name == a.device and u.username == a.login) for a in users}
        async with lab.control() as ctl:  # slow answers so the backup lands in the middle of the run
            for dev in lab.state.iosxe:
                await ctl.set_faults(dev.name, {"latency": 0.1})

        run = asyncio.create_task(keyturn(src, "rotate", "--all", "--concurrency", "4", "--json"))
        while finished_rotations(src) < 3:
            assert not run.done(), await run
            await asyncio.sleep(0.05)
        file = tmp_path / "under-load.ktbackup"
        done_at_backup = finished_rotations(src)
        code, out, err = await keyturn(src, "vault", "backup", str(file))
        assert code == 0, err
        code, out, err = await run
        assert code == 0, err
        assert [r["outcome"] for r in json.loads(out)["results"]].count("rotated") == DEVICES
        assert 3 <= done_at_backup < DEVICES, "the backup was taken while the run went on"

        with pg_schema_url("kt_backup_lab") as url:
            dst = tmp_path / "pg-home"
            dst.mkdir()
            shutil.copy(src / "master.key", dst / "master.key")  # the key is backed up separately
            code, out, err = await keyturn(dst, "vault", "restore", str(file), database_url=url)
            assert code == 0, err
            code, out, err = await keyturn(dst, "recover", "--json", database_url=url)
            assert code == 0, err

            restored, rotated = secrets_and_rotated(dst, url, users)
            # In the backup: every rotation that had begun (settled by recover), and nothing after it.
            assert done_at_backup <= len(rotated) < DEVICES
            assert await all_log_in(lab, [a for a in users if a.uid in rotated], restored) == []
            later = [a for a in users if a.uid not in rotated]
            assert all(restored[a.uid] == before[a.uid] for a in later)
            # Rotated after the backup: the restored vault sets them again through the device admin.
            code, out, err = await keyturn(dst, "rotate", *[a.uid for a in later], "--json", database_url=url)
            assert code == 0, err
            restored, _ = secrets_and_rotated(dst, url, users)
            assert await all_log_in(lab, users, restored) == []

            # And back: the settled PostgreSQL vault into a fresh SQLite one.
            back = tmp_path / "from-pg.ktbackup"
            code, out, err = await keyturn(dst, "vault", "backup", str(back), database_url=url)
            assert code == 0, err
        lite = tmp_path / "lite-home"
        lite.mkdir()
        shutil.copy(src / "master.key", lite / "master.key")
        code, out, err = await keyturn(lite, "vault", "restore", str(back))
        assert code == 0, err
        again, _ = secrets_and_rotated(lite, None, users)
        assert again == restored
        assert await all_log_in(lab, users, again) == []
