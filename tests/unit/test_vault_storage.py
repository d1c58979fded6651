"""Storage: ciphertext only at rest, corruption detection, locked / unreachable databases."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.errors import DecryptionFailed, StorageUnavailable
from keyturn.secret import Secret
from keyturn.vault import Field, Vault


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_plaintext_secret_in_sqlite_file_or_wal(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    vault = Vault.init(settings)
    markers = [f"PLAINTEXT-MARKER-{i}-s3cr3t" for i in range(5)]
    for i, m in enumerate(markers[:4]):
        rec = vault.add(type="pamUser", title=f"user {i}", fields=[
            Field("login", None, [f"visible-login-{i}"]), Field("password", None, [Secret(m)])],
            custom=[Field("secret", "enable", [Secret(m + "-enable")])])
    vault.add_version(rec.uid, Secret(markers[4]), rotation_id="r")
    vault.reveal(rec.uid, actor="t")
    db, wal = tmp_path / "keyturn.db", tmp_path / "keyturn.db-wal"
    assert wal.exists()  # the vault is open in WAL mode: recent pages live here
    blob = db.read_bytes() + wal.read_bytes()
    assert b"visible-login-3" in blob  # the scan does see stored text
    for m in markers:
        assert m.encode() not in blob
        assert m.encode("utf-16-le") not in blob
    vault.close()
    blob = db.read_bytes()
    assert all(m.encode() not in blob for m in markers)


def test_corrupted_ciphertext_names_record_and_field(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with Vault.init(settings) as vault:
        uid = vault.add(type="pamUser", title="u", fields=[Field("password", None, [Secret("pw")])]).uid
    con = sqlite3.connect(tmp_path / "keyturn.db")
    (ct,) = con.execute("SELECT ciphertext FROM kt_secret_versions WHERE record_uid = ?", (uid,)).fetchone()
    bad = bytearray(ct)
    bad[20] ^= 0xFF
    con.execute("UPDATE kt_secret_versions SET ciphertext = ? WHERE record_uid = ?", (bytes(bad), uid))
    con.commit()
    con.close()
    with Vault.open(settings) as vault:
        with pytest.raises(DecryptionFailed, match=rf"record {uid} field 'password' version 1") as err:
            vault.get(uid)
        assert (err.value.record_uid, err.value.field) == (uid, "password")
        assert [s.uid for s in vault.summaries(type="pamUser")] == [uid]  # listing still works


def test_ciphertext_swapped_between_records_is_detected(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with Vault.init(settings) as vault:
        a = vault.add(type="login", title="a", fields=[Field("password", None, [Secret("pa")])]).uid
        b = vault.add(type="login", title="b", fields=[Field("password", None, [Secret("pb")])]).uid
    con = sqlite3.connect(tmp_path / "keyturn.db")
    (ct_a,) = con.execute("SELECT ciphertext FROM kt_secret_versions WHERE record_uid = ?", (a,)).fetchone()
    con.execute("UPDATE kt_secret_versions SET ciphertext = ? WHERE record_uid = ?", (ct_a, b))
    con.commit()
    con.close()
    with Vault.open(settings) as vault:
        assert vault.secret(a).reveal() == "pa"
        with pytest.raises(DecryptionFailed, match=b):
            vault.secret(b)


def test_sqlite_held_by_exclusive_lock_is_storage_unavailable(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    Vault.init(settings).close()
    holder = sqlite3.connect(tmp_path / "keyturn.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        locked = r"database sqlite:///.*keyturn.db is unavailable: .*locked"
        with pytest.raises(StorageUnavailable, match=locked):
            Vault.open(settings, timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    Vault.open(settings).close()  # fine once the lock is gone


def test_unreachable_postgres_is_storage_unavailable(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://keyturn:hunter2@127.0.0.1:{_free_port()}/test"
    settings = Settings(home=tmp_path, database_url=url)
    with pytest.raises(StorageUnavailable) as err:
        Vault.init(settings, timeout=1)
    assert "is unavailable" in str(err.value)
    assert "hunter2" not in str(err.value)  # the URL password is hidden
    with pytest.raises(StorageUnavailable):
        Vault.open(settings, timeout=1)
