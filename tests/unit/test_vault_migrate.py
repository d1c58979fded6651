"""Opening the vault runs Alembic only when the stored schema is not the shipped head (issue 14).

`Storage.migrate` reads the stored revision with one query and compares it with `shipped_head()`, which
is computed from the version files without Alembic; these tests hold that head to Alembic's own, and
check each way a database can stand: at the head (nothing runs, Alembic is not even imported), behind
(upgraded, as before), unknown to this keyturn (refused, as before), empty (created).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from keyturn.config import Settings
from keyturn.errors import StorageUnavailable
from keyturn.secret import Secret
from keyturn.vault import Field, Vault
from keyturn.vault.storage import Storage, shipped_head
from tests.pg import pg_schema_url

MIGRATIONS = Path(__file__).resolve().parents[2] / "src" / "keyturn" / "vault" / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    return cfg


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(home=tmp_path)
        return
    with pg_schema_url("kt_migrate") as url:
        yield Settings(home=tmp_path, database_url=url, auto_upgrade=True)


def stored(storage: Storage) -> list[str]:
    with storage.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def test_the_shipped_head_is_alembics_head() -> None:
    assert shipped_head() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def _schema(engine: sa.Engine) -> set[tuple[str, str]]:
    """Every (table, column) of the database."""
    inspector = sa.inspect(engine)
    return {(t, c["name"]) for t in inspector.get_table_names() for c in inspector.get_columns(t)}


def test_a_vault_behind_the_head_is_upgraded_on_open(settings: Settings) -> None:
    with Vault.init(settings) as v:
        uid = v.add(type="pamUser", title="u", fields=[Field("password", None, [Secret("pw-1")])]).uid
    storage = Storage(settings.effective_database_url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    previous = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    assert isinstance(previous, str)
    cfg = alembic_config()
    with storage.engine.connect() as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, previous)
    assert stored(storage) == [previous]
    schema_behind = _schema(storage.engine)
    storage.dispose()

    with Vault.open(settings) as v:
        assert v.secret(uid).reveal() == "pw-1"  # type: ignore[union-attr]
        assert stored(v.storage) == [head]
        assert _schema(v.storage.engine) > schema_behind  # the head's tables or columns


def test_a_database_of_a_newer_keyturn_is_refused_as_before(settings: Settings) -> None:
    Vault.init(settings).close()
    storage = Storage(settings.effective_database_url)
    with storage.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(StorageUnavailable, match="schema migration failed"):
        storage.migrate()
    assert stored(storage) == ["9999_from_the_future"]  # touched nothing
    storage.dispose()


def test_a_new_database_gets_the_whole_schema(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'new.db'}")
    storage.migrate()
    assert stored(storage) == [shipped_head()]
    storage.migrate()  # at the head: nothing to do
    assert stored(storage) == [shipped_head()]
    storage.dispose()


def test_opening_a_vault_at_the_head_does_not_import_alembic(tmp_path: Path) -> None:
    Vault.init(Settings(home=tmp_path)).close()
    code = ("import sys; from keyturn.config import Settings; from keyturn.vault import Vault; "
            f"Vault.open(Settings(home={str(tmp_path)!r})).close(); "
            "print(sorted(m for m in sys.modules if m == 'alembic' or m.startswith('alembic.')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
