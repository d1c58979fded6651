"""Record integrity tags and the one-time upgrade of a vault made before them (SQLite and PostgreSQL).

A "legacy" vault is made the honest way round: a current vault is taken back to what the previous
release stored — schema revision 0004 (no `kt_records.mac`), a version-1 key check, no integrity key,
an unkeyed SHA-256 audit chain — then opened by this release.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyturn.audit.chain import GENESIS, canonical
from keyturn.config import Settings
from keyturn.secret import Secret
from keyturn.vault import Field, Vault
from keyturn.vault.keys import load_key_file
from keyturn.vault.storage import Storage
from tests.pg import pg_schema_url

MIGRATIONS = Path(__file__).resolve().parents[2] / "src" / "keyturn" / "vault" / "migrations"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(home=tmp_path)
        return
    with pg_schema_url("kt_integrity") as url:
        yield Settings(home=tmp_path, database_url=url, auto_upgrade=True)


def make_legacy(settings: Settings) -> None:
    """Take the vault back to the previous release's storage (see the module docstring)."""
    storage = Storage(settings.effective_database_url)
    key = load_key_file(settings.effective_key_file)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    with storage.engine.connect() as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004_tokens")
        nonce = os.urandom(12)
        v1 = nonce + AESGCM(key.material).encrypt(nonce, b"keyturn keycheck v1", b"keycheck")
        conn.execute(sa.text("UPDATE kt_meta SET value = :v WHERE key = 'keycheck'"),
                     {"v": base64.b64encode(v1).decode()})
        conn.execute(sa.text("DELETE FROM kt_meta WHERE key = 'integrity_key'"))
        prev = GENESIS
        rows = conn.execute(sa.text("SELECT id, ts, actor, action, record_uid, details FROM kt_audit "
                                    "ORDER BY id")).all()
        for r in rows:
            body = {"id": r.id, "ts": r.ts, "actor": r.actor, "action": r.action,
                    "record_uid": r.record_uid, "details": r.details, "prev_hash": prev}
            h = hashlib.sha256(canonical(body).encode()).hexdigest()
            conn.execute(sa.text("UPDATE kt_audit SET prev_hash = :p, hash = :h WHERE id = :i"),
                         {"p": prev, "h": h, "i": r.id})
            prev = h
        conn.execute(sa.text("UPDATE kt_meta SET value = :v WHERE key = 'audit_head'"),
                     {"v": json.dumps({"id": rows[-1].id, "hash": prev})})
    storage.dispose()


def fill(settings: Settings) -> dict[str, str]:
    with Vault.init(settings) as v:
        uids = {v.add(type="pamUser", title=f"user {i}",
                      fields=[Field("login", None, [f"u{i}"]), Field("password", None, [Secret(f"pw-{i}")])],
                      meta={"scripts": [{"script": "/opt/notify.py"}]} if i == 0 else None).uid: f"pw-{i}"
                for i in range(3)}
        v.reveal(next(iter(uids)), actor="cli:admin")
    return uids


def test_legacy_vault_is_tagged_and_its_chain_rekeyed_on_first_open(settings: Settings) -> None:
    secrets = fill(settings)
    make_legacy(settings)
    with Vault.open(settings) as v:
        assert {u: v.secret(u).reveal() for u in secrets} == secrets  # type: ignore[union-attr]
        assert v.tampered() == []
        assert v.audit.verify() is None
        entry = v.audit.list(limit=1)[0]
        assert entry.action == "vault.integrity.upgrade" and entry.actor == "keyturn"
        assert entry.details["records_tagged"] == 4  # 3 users + the default PAM configuration
        assert entry.details["chain_broken_at"] is None
        assert entry.details["audit_entries_rekeyed"] == entry.id - 1
        assert len(entry.details["legacy_head"]["hash"]) == 64
        assert len(v.audit.list(action="reveal")) == 1
    with Vault.open(settings) as v:  # once only
        assert len(v.audit.list(action="vault.integrity.upgrade")) == 1


def test_a_chain_broken_before_the_upgrade_stays_broken(settings: Settings) -> None:
    fill(settings)
    with Vault.open(settings) as v:
        v.audit.append("test.after", actor="t")
    make_legacy(settings)
    storage = Storage(settings.effective_database_url)
    with storage.engine.begin() as conn:
        gone = conn.execute(sa.text("SELECT id FROM kt_audit WHERE action = 'reveal'")).scalar_one()
        conn.execute(sa.text("DELETE FROM kt_audit WHERE action = 'reveal'"))
    storage.dispose()
    with Vault.open(settings) as v:
        upgrade = v.audit.list(action="vault.integrity.upgrade")[0]
        assert upgrade.details["chain_broken_at"] == gone + 1  # the entry after the gap, as before
        assert upgrade.details["audit_entries_rekeyed"] == gone - 1
        assert v.audit.verify() == gone + 1  # the upgrade did not launder the deletion


def test_record_tag_survives_rekey_and_every_write(settings: Settings) -> None:
    from keyturn.vault.keys import MasterKey

    with Vault.init(settings) as v:
        uid = v.add(type="pamUser", title="a", fields=[Field("password", None, [Secret("x")])]).uid
        v.set_meta(uid, "note", {"k": 1})
        v.update(uid, title="b", custom=[Field("text", "site", ["lab"])])
        v.add_version(uid, Secret("y"), field="enable")   # adds a slot to the field list
        v.promote(uid, v.add_version(uid, Secret("z")))
        new_key = MasterKey.generate()
        assert v.rekey(new_key, batch_size=1).finished
        assert v.get(uid).title == "b"
        assert v.tampered() == []
        entry = v.audit.list(action="record.meta", limit=1)[0]
        assert entry.details["key"] == "note" and len(entry.details["digest"]) == 64
