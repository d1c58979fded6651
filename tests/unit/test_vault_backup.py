"""`keyturn.vault.backup`: online backup under rotations, restore across SQLite ↔ PostgreSQL, and every
way a bad file or a wrong target is refused with the target left as it was."""

from __future__ import annotations

import asyncio
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keyturn.config import Settings
from keyturn.errors import RecordTampered, VaultError, VaultSealed
from keyturn.vault import Vault
from keyturn.vault.backup import BackupInvalid, backup, restore
from keyturn.vault.keys import create_key_file
from keyturn.vault.storage import sqlite_path
from tests.pg import pg_schema_url
from tests.unit.engine_world import World


def _settings(home: Path, src: Vault, url: str | None = None) -> Settings:
    """Settings for a fresh target whose key file is a copy of `src`'s (backed up separately)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(src.settings.effective_key_file, home / "master.key")
    return Settings(home=home, database_url=url) if url else Settings(home=home)


def _everything(vault: Vault) -> dict[str, list[tuple[int, str, str]]]:
    """Every record's every password version: (version, state, value)."""
    out = {}
    for summary in vault.summaries():
        out[summary.uid] = [(v.version, str(v.state), vault.version_secret(summary.uid, v.version).reveal())
                            for v in vault.versions(summary.uid)]
    return out


def _rows(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            md = sa.MetaData()
            md.reflect(bind=conn)
            return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                    for t in md.sorted_tables if t.name != "alembic_version"}
    finally:
        engine.dispose()


async def test_backup_while_rotating_restores_into_postgresql_and_back(world: World, tmp_path: Path):
    users = [world.user] + [world.add_user(f"u{i}", f"op{i}", f"Old-pass-{i}x") for i in range(2, 6)]
    for i in range(2, 6):
        world.dev.set_user(f"op{i}", f"Old-pass-{i}x")
    engine = world.engine()
    file = tmp_path / "during.ktbackup"
    rotations = asyncio.gather(*(engine.rotate(u) for u in users for _ in range(2)))
    taken = await asyncio.to_thread(backup, world.vault.storage, world.vault.barrier, file)
    results = await rotations
    assert all(r.outcome == "rotated" for r in results), [r.outcome for r in results]
    assert taken.tables["kt_records"] == len(world.vault.summaries())
    # Restore the settled state too: its secrets must still log in on the device.
    final = tmp_path / "final.ktbackup"
    backup(world.vault.storage, world.vault.barrier, final)
    expected = _everything(world.vault)

    with pg_schema_url("kt_backup") as url:
        pg = _settings(tmp_path / "pg", world.vault, url)
        restore(pg, file)  # the snapshot taken mid-rotation is consistent: it verifies and restores
        restore(pg, final, force=True)
        with Vault.open(pg) as restored:
            assert _everything(restored) == expected
            for uid in users:
                login = restored.get(uid).field("login")
                assert world.dev.password(login) == restored.secret(uid).reveal()  # type: ignore[union-attr]
            assert restored.audit.verify() is None
            restored.add(type="login", title="after restore")  # sequences follow the restored ids
            back = tmp_path / "from-pg.ktbackup"
            backup(restored.storage, restored.barrier, back)
        lite = _settings(tmp_path / "lite", world.vault)
        restore(lite, back)
        with Vault.open(lite) as again:
            assert {k: v for k, v in _everything(again).items() if k in expected} == expected
            assert again.audit.verify() is None
            assert again.tampered() == []


def test_every_table_of_the_schema_is_in_the_backup(world: World, tmp_path: Path):
    file = tmp_path / "b.zip"
    summary = backup(world.vault.storage, world.vault.barrier, file)
    assert summary.tables == _rows(world.vault.storage.url)
    with zipfile.ZipFile(file) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert set(manifest["tables"]) == set(_rows(world.vault.storage.url))
    assert {"kt_records", "kt_secret_versions", "kt_audit", "kt_meta", "rotations", "api_tokens"} \
        <= set(manifest["tables"])


def _rewrite(src: Path, dst: Path, part: str, change, *, fix_sha: bool = False) -> None:
    import hashlib

    with zipfile.ZipFile(src) as zin:
        items = {n: zin.read(n) for n in zin.namelist()}
    items[part] = change(items[part])
    if fix_sha:
        manifest = json.loads(items["manifest.json"])
        name = part.removeprefix("tables/").removesuffix(".jsonl")
        manifest["tables"][name]["sha256"] = hashlib.sha256(items[part]).hexdigest()
        items["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w") as zout:
        for n, data in items.items():
            zout.writestr(n, data)


@pytest.fixture
def taken(world: World, tmp_path: Path) -> Path:
    file = tmp_path / "b.zip"
    backup(world.vault.storage, world.vault.barrier, file)
    return file


def test_corrupted_truncated_or_altered_backups_are_refused_and_nothing_is_written(
        world: World, taken: Path, tmp_path: Path):
    target = _settings(tmp_path / "t", world.vault)
    altered = tmp_path / "altered.zip"
    _rewrite(taken, altered, "tables/kt_audit.jsonl", lambda b: b.replace(b"vault.init", b"vault.tnit"))
    with pytest.raises(BackupInvalid, match=r"part tables/kt_audit\.jsonl does not match its checksum"):
        restore(target, altered)
    _rewrite(taken, altered, "tables/kt_audit.jsonl", lambda b: b.replace(b"vault.init", b"vault.tnit"),
             fix_sha=True)
    with pytest.raises(BackupInvalid, match=r"manifest\.json fails its integrity tag"):
        restore(target, altered)
    truncated = tmp_path / "short.zip"
    truncated.write_bytes(taken.read_bytes()[: taken.stat().st_size // 2])
    with pytest.raises(BackupInvalid, match=r"truncated|corrupted|missing"):
        restore(target, truncated)
    db = sqlite_path(target.effective_database_url)
    assert db is not None and (not db.exists() or all(
        n == 0 for n in _rows(target.effective_database_url).values()))


def test_non_empty_target_refused_without_force(world: World, taken: Path, tmp_path: Path):
    with pytest.raises(VaultError, match="--force"):
        restore(world.vault.settings, taken)
    other = Vault.init(Settings(home=tmp_path / "other"))
    other.add(type="login", title="kept")
    other.close()
    target = Settings(home=tmp_path / "other")
    shutil.copy(world.vault.settings.effective_key_file, target.effective_key_file)
    with pytest.raises(VaultError, match="already holds"):
        restore(target, taken)
    restore(target, taken, force=True)
    with Vault.open(target) as v:
        assert [s.title for s in v.summaries() if s.title == "kept"] == []
        assert _everything(v) == _everything(world.vault)


def test_wrong_master_key_is_sealed(world: World, taken: Path, tmp_path: Path):
    home = tmp_path / "wrong"
    home.mkdir()
    create_key_file(home / "master.key")
    with pytest.raises(VaultSealed):
        restore(Settings(home=home), taken)
    db = sqlite_path(Settings(home=home).effective_database_url)
    assert db is not None and not db.exists()


def test_other_schema_revision_refused_naming_both(world: World, taken: Path, tmp_path: Path):
    def older(raw: bytes) -> bytes:
        manifest = json.loads(raw)
        manifest["schema_revision"] = "0001"
        return json.dumps(manifest).encode()

    other = tmp_path / "old.zip"
    _rewrite(taken, other, "manifest.json", older)
    with pytest.raises(BackupInvalid, match=r"schema revision 0001, this keyturn has \w+"):
        restore(_settings(tmp_path / "t", world.vault), other)


def test_a_record_failing_its_checks_rolls_the_whole_restore_back(world: World, tmp_path: Path):
    with world.vault.storage.session(write=True) as s:
        s.execute(sa.text("UPDATE kt_records SET meta_json = '{}' WHERE uid = :u"), {"u": world.user})
    file = tmp_path / "b.zip"
    backup(world.vault.storage, world.vault.barrier, file)
    target = _settings(tmp_path / "t", world.vault)
    with pytest.raises(RecordTampered):
        restore(target, file)
    assert all(n == 0 for n in _rows(target.effective_database_url).values())


def test_cli_backup_and_restore(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from keyturn.cli.main import app

    runner = CliRunner()
    monkeypatch.setenv("KEYTURN_HOME", str(world.vault.settings.home))
    file = tmp_path / "cli.zip"
    result = runner.invoke(app, ["vault", "backup", str(file)])
    assert result.exit_code == 0, result.output
    assert "does NOT contain the master key" in result.output
    result = runner.invoke(app, ["vault", "restore", str(file)])
    assert result.exit_code != 0
    assert "--force" in result.output
    target = _settings(tmp_path / "t", world.vault)
    monkeypatch.setenv("KEYTURN_HOME", str(target.home))
    result = runner.invoke(app, ["vault", "restore", str(file)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("restored ")


_RESTORE = """
import sys
from pathlib import Path
from keyturn.config import Settings
from keyturn.vault.backup import restore
print("start", flush=True)
restore(Settings(home=Path(sys.argv[1])), Path(sys.argv[2]))
"""


def test_kill_9_mid_restore_leaves_the_target_untouched_or_complete(world: World, tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from keyturn.secret import Secret
    from keyturn.vault import Field

    for i in range(150):
        world.vault.add(type="login", title=f"bulk-{i}",
                        fields=[Field("password", value=[Secret(f"pw-{i}")])])
    file = tmp_path / "big.zip"
    full = backup(world.vault.storage, world.vault.barrier, file).rows
    outcomes = set()
    for attempt, delay in enumerate((0.0, 0.05, 0.2, 0.5, None)):
        target = _settings(tmp_path / f"k{attempt}", world.vault)
        proc = subprocess.Popen([sys.executable, "-c", _RESTORE, str(target.home), str(file)],
                                stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
        assert proc.stdout is not None and proc.stdout.readline() == b"start\n"
        if delay is None:  # the last one runs to the end
            assert proc.wait() == 0
        else:
            time.sleep(delay)  # kill points spread over the restore; the invariant holds at any of them
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        db = sqlite_path(target.effective_database_url)
        assert db is not None
        rows = sum(_rows(target.effective_database_url).values()) if db.exists() else 0
        assert rows in (0, full)
        outcomes.add(rows)
    assert full in outcomes


def test_backup_refused_mid_rekey(world: World, tmp_path: Path):
    from keyturn.vault.keys import MasterKey

    world.vault.rekey(MasterKey.generate(), limit=1, batch_size=1)
    with pytest.raises(VaultError, match="rekey is in progress"):
        backup(world.vault.storage, world.vault.barrier, tmp_path / "b.zip")
    assert not (tmp_path / "b.zip").exists()
