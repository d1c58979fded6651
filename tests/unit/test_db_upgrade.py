"""Upgrades (issue 18, item 3): a vault of the first released schema (0001_initial) comes to the head with
its data intact; `auto_upgrade` off refuses a schema behind with "run `keyturn db upgrade`", which then
upgrades it; `keyturn db current|check` report where the database stands.

The old vault is built as that release wrote it: Alembic `upgrade 0001_initial` on an empty database,
then the rows of that schema's four tables — no record integrity tags, no integrity key, an unkeyed
SHA-256 audit chain — taken from a vault made with the current code (same master key file).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from typer.testing import CliRunner

from keyturn.audit.chain import GENESIS, entry_hash
from keyturn.cli.main import app
from keyturn.config import Settings
from keyturn.errors import StorageUnavailable
from keyturn.secret import Secret
from keyturn.vault import Field, Vault
from keyturn.vault.keys import load_key_file
from keyturn.vault.storage import Storage, shipped_head
from tests.pg import pg_schema_url

MIGRATIONS = Path(__file__).resolve().parents[2] / "src" / "keyturn" / "vault" / "migrations"
FIRST = "0001_initial"
COLUMNS_0001 = {
    "kt_meta": ("key", "value"),
    "kt_records": ("uid", "title", "title_key", "type", "fields_json", "custom_json", "meta_json",
                   "wrapped_key", "key_id", "created_at", "updated_at"),
    "kt_secret_versions": ("id", "record_uid", "field", "version", "state", "rotation_id", "ciphertext",
                           "created_at", "updated_at"),
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(home=tmp_path / "old")
        return
    with pg_schema_url("kt_upgrade") as url:
        yield Settings(home=tmp_path / "old", database_url=url)


def _first_release_vault(tmp_path: Path, target: Settings) -> dict[str, list[str]]:
    """A vault at 0001_initial in `target`; returns each record's password versions, oldest first."""
    source = Settings(home=tmp_path / "source")
    expected: dict[str, list[str]] = {}
    with Vault.init(source) as v:
        for i in range(3):
            uid = v.add(type="pamUser", title=f"sw{i}",
                        fields=[Field("password", None, [Secret(f"pw-{i}-1")])]).uid
            v.add_version(uid, Secret(f"pw-{i}-2"), state="current")
            expected[uid] = [f"pw-{i}-1", f"pw-{i}-2"]
    target.home.mkdir(parents=True)
    shutil.copy(source.effective_key_file, target.effective_key_file)
    src = sa.create_engine(source.effective_database_url)
    dst = sa.create_engine(target.effective_database_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("path_separator", "os")
        with dst.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, FIRST)
        meta, src_meta = sa.MetaData(), sa.MetaData()
        meta.reflect(dst)
        src_meta.reflect(src)
        with src.connect() as s, dst.begin() as d:
            for table, cols in COLUMNS_0001.items():
                t = src_meta.tables[table]
                rows = [dict(r._mapping) for r in s.execute(sa.select(*(t.c[c] for c in cols)))]
                if table == "kt_meta":  # the first release: no integrity key, a v1 key check; its chain below
                    rows = [r for r in rows if r["key"] not in ("integrity_key", "audit_head")]
                    for r in rows:
                        if r["key"] == "keycheck":
                            r["value"] = _keycheck_v1(target)
                d.execute(meta.tables[table].insert(), rows)
            # Its audit chain: plain SHA-256 links (no integrity key yet).
            prev = GENESIS
            for i, action in enumerate(("vault.init", "record.add"), start=1):
                row = {"id": i, "ts": f"2026-01-0{i}T00:00:00+00:00", "actor": "cli", "action": action,
                       "record_uid": None, "details": json.dumps({}), "prev_hash": prev}
                row["hash"] = prev = entry_hash(_Row(row))
                d.execute(meta.tables["kt_audit"].insert(), [row])
            d.execute(meta.tables["kt_meta"].insert(), [{"key": "audit_head",
                                                         "value": json.dumps({"id": 2, "hash": prev})}])
    finally:
        src.dispose()
        dst.dispose()
    return expected


def _keycheck_v1(settings: Settings) -> str:
    key = load_key_file(settings.effective_key_file)
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key.material).encrypt(nonce, b"keyturn keycheck v1",
                                                                b"keycheck")).decode()


class _Row:
    def __init__(self, values: dict[str, object]) -> None:
        self.__dict__.update(values)


def _revision(settings: Settings) -> str | None:
    storage = Storage(settings.effective_database_url)
    try:
        return storage.schema_revision()
    finally:
        storage.dispose()


def _assert_intact(settings: Settings, expected: dict[str, list[str]]) -> None:
    with Vault.open(settings) as v:
        for uid, passwords in expected.items():
            assert v.secret(uid).reveal() == passwords[-1]  # type: ignore[union-attr]
            assert sorted(v.version_secret(uid, i.version).reveal() for i in v.versions(uid)) == passwords
        assert v.audit.verify() is None
        assert v.tampered() == []
    assert _revision(settings) == shipped_head()


def test_a_first_release_vault_is_upgraded_on_open_when_auto_upgrade_is_on(
        tmp_path: Path, target: Settings) -> None:
    expected = _first_release_vault(tmp_path, target)
    assert _revision(target) == FIRST
    _assert_intact(target.model_copy(update={"auto_upgrade": True}), expected)


def test_auto_upgrade_off_refuses_then_keyturn_db_upgrade_upgrades(
        tmp_path: Path, target: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _first_release_vault(tmp_path, target)
    off = target.model_copy(update={"auto_upgrade": False})
    with pytest.raises(StorageUnavailable, match=r"schema is at 0001_initial but this keyturn needs "
                                                 rf"{shipped_head()}; run `keyturn db upgrade`"):
        Vault.open(off)
    assert _revision(target) == FIRST  # touched nothing

    monkeypatch.setenv("KEYTURN_HOME", str(target.home))
    if target.database_url:
        monkeypatch.setenv("KEYTURN_DATABASE_URL", target.database_url)
    runner = CliRunner()
    r = runner.invoke(app, ["db", "check"])
    assert r.exit_code == 1 and f"schema {FIRST}, this keyturn's is {shipped_head()}: behind" in r.output
    r = runner.invoke(app, ["db", "upgrade"])
    assert r.exit_code == 0, r.output
    assert f"schema upgraded from {FIRST} to {shipped_head()}" in r.output
    r = runner.invoke(app, ["db", "current", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["state"] == "up to date"
    r = runner.invoke(app, ["db", "check"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["db", "upgrade"])
    assert r.exit_code == 0 and "nothing to do" in r.output
    _assert_intact(off, expected)


def test_the_default_is_auto_upgrade_for_sqlite_only(tmp_path: Path) -> None:
    assert Settings(home=tmp_path).effective_auto_upgrade is True
    assert Settings(home=tmp_path, database_url="postgresql+psycopg://h/db").effective_auto_upgrade is False
    assert Settings(home=tmp_path, database_url="postgresql+psycopg://h/db",
                    auto_upgrade=True).effective_auto_upgrade is True


def test_a_newer_schema_is_refused_naming_both_revisions(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    Vault.init(settings).close()
    engine = sa.create_engine(settings.effective_database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    with pytest.raises(StorageUnavailable, match=f"schema is at 9999_future, newer than this keyturn "
                                                 rf"\(its newest is {shipped_head()}\)"):
        Vault.open(settings)
    assert _revision(settings) == "9999_future"


def test_migration_chatter_is_debug_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        with caplog.at_level(logging.INFO):
            storage.migrate()
        assert [r for r in caplog.records if r.name.startswith("alembic")] == []
        with caplog.at_level(logging.DEBUG):
            storage.dispose()
            Path(tmp_path / "new.db").unlink()
            storage = Storage(f"sqlite:///{tmp_path / 'new.db'}")
            storage.migrate()
        lines = [r for r in caplog.records if r.name.startswith("alembic")]
        assert lines and {r.levelname for r in lines} == {"DEBUG"}
    finally:
        storage.dispose()


def test_init_on_a_vault_behind_with_auto_upgrade_off_upgrades_nothing(tmp_path: Path) -> None:
    target = Settings(home=tmp_path / "old")
    _first_release_vault(tmp_path, target)
    with pytest.raises(StorageUnavailable, match=r"run `keyturn db upgrade`"):
        Vault.init(target.model_copy(update={"auto_upgrade": False, "master_key": None}))
    assert _revision(target) == FIRST
