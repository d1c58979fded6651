"""Storage contract: the same vault behaviour on embedded SQLite and on PostgreSQL.

PostgreSQL runs get a fresh, uniquely named schema in database `test` on 127.0.0.1:5432 (dropped
afterwards); they are skipped with a message only when nothing listens on 5432.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from keyturn.config import Settings
from keyturn.errors import DuplicateRecord, VaultSealed
from keyturn.secret import Secret
from keyturn.vault import Field, NewRecord, Vault, VersionState
from keyturn.vault.keys import MasterKey, encode_key
from tests.pg import pg_schema_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(home=tmp_path)
        return
    with pg_schema_url("kt_contract") as url:
        yield Settings(home=tmp_path, database_url=url)


@pytest.fixture
def vault(settings: Settings) -> Iterator[Vault]:
    v = Vault.init(settings)
    yield v
    v.close()


def _user(vault: Vault, title: str, pw: str) -> str:
    return vault.add(type="pamUser", title=title, fields=[Field("login", None, ["admin"]),
                                                          Field("password", None, [Secret(pw)])]).uid


def test_records_and_versions(vault: Vault) -> None:
    uid = _user(vault, "core admin", "pw-1")
    v2 = vault.add_version(uid, Secret("pw-2"), rotation_id="rot-1")
    assert vault.secret(uid).reveal() == "pw-1"
    vault.promote(uid, v2)
    assert vault.secret(uid).reveal() == "pw-2"
    assert [(i.version, i.state) for i in vault.versions(uid)] == [
        (2, VersionState.CURRENT), (1, VersionState.PREVIOUS)]
    assert vault.get("CORE ADMIN").field("login") == "admin"
    with pytest.raises(DuplicateRecord):
        _user(vault, "Core Admin", "x")


def test_one_current_under_concurrency(vault: Vault) -> None:
    uid = _user(vault, "c", "pw-0")
    versions = [vault.add_version(uid, Secret(f"c{i}")) for i in range(6)]
    gate = threading.Barrier(len(versions))
    errors: list[BaseException] = []

    def go(v: int) -> None:
        gate.wait()
        try:
            vault.promote(uid, v)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(i.state is VersionState.CURRENT for i in vault.versions(uid)) == 1
    assert vault.audit.verify() is None


def test_import_is_all_or_nothing(vault: Vault) -> None:
    before = len(vault.summaries())
    specs = [NewRecord(type="login", title="fresh one"),
             NewRecord(type="login", title="Default PAM Configuration")]
    with pytest.raises(DuplicateRecord, match=r"record #2"):
        vault.add_many(specs)
    assert len(vault.summaries()) == before


def test_audit_tamper_detected(vault: Vault) -> None:
    _user(vault, "a", "pw")
    entries = vault.audit.list()
    target = entries[1].id
    with vault.engine.begin() as conn:
        conn.execute(sa.text("UPDATE kt_audit SET actor = 'mallory' WHERE id = :i"), {"i": target})
    assert vault.audit.verify() == target


def test_no_plaintext_in_any_column(vault: Vault) -> None:
    markers = [f"PG-PLAINTEXT-{i}-{secrets.token_hex(4)}" for i in range(3)]
    uid = _user(vault, "scan", markers[0])
    vault.add_version(uid, Secret(markers[1]))
    vault.add(type="login", title="scan2", custom=[Field("secret", "api key", [Secret(markers[2])])])
    vault.reveal(uid, actor="scanner")
    dump: list[bytes] = []
    with vault.engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        dump.append(bytes(value))
                    elif value is not None:
                        dump.append(str(value).encode())
    blob = b"\n".join(dump)
    assert b"scan2" in blob  # the dump sees stored text
    for m in markers:
        assert m.encode() not in blob


def test_interrupted_rekey(settings: Settings) -> None:
    with Vault.init(settings) as v:
        uids = {_user(v, f"u{i}", f"pw-{i}"): f"pw-{i}" for i in range(4)}
    new_key = MasterKey.generate()
    with Vault.open(settings) as v:
        assert not v.rekey(new_key, limit=2).finished
    with pytest.raises(VaultSealed):
        Vault.open(settings)
    with Vault.open(settings, new_key=new_key) as v:
        assert v.rekey(new_key).finished
    with pytest.raises(VaultSealed, match="does not match"):
        Vault.open(settings)
    from pydantic import SecretStr

    env = settings.model_copy(update={"master_key": SecretStr(encode_key(new_key).reveal())})
    with Vault.open(env) as v:
        assert {u: v.secret(u).reveal() for u in uids} == uids
