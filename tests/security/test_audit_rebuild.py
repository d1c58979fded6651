"""Red team, database write access (issue 12 #7): hide `reveal` entries by deleting them and rebuilding
the hash chain the way an unkeyed chain allows. The chain is keyed, so `keyturn audit verify` names
the first rewritten entry; the head shipped to the audit sinks exposes a truncated tail to a SIEM."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from keyturn.audit.chain import GENESIS, canonical
from keyturn.audit.sinks.base import AuditEvent
from keyturn.audit.sinks.buffer import Spool
from keyturn.audit.sinks.dispatcher import Dispatcher, Route
from keyturn.audit.sinks.formats import render_jsonl
from keyturn.cli.main import app
from keyturn.config import Settings
from keyturn.errors import AuditSinkUnavailable
from keyturn.secret import Secret
from keyturn.vault import Field, Vault
from keyturn.vault.keys import MasterKey, encode_key


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    with Vault.init(Settings(home=tmp_path)) as v:
        uid = v.add(type="pamUser", title="core admin", fields=[Field("password", None, [Secret("pw")])]).uid
        for _ in range(3):
            v.reveal(uid, actor="cli:mallory")
        v.audit.append("test.after", actor="t")
    yield tmp_path


COLS = "id, ts, actor, action, record_uid, details"


def unkeyed(new_id: int, row: tuple[object, ...], prev: str) -> str:
    """An entry hash as the pre-keyed chain computed it: anyone with the database can."""
    _, ts, actor, action, record_uid, details = row
    body = {"id": new_id, "ts": ts, "actor": actor, "action": action, "record_uid": record_uid,
            "details": details, "prev_hash": prev}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def rebuild_without_reveals(db: Path) -> int:
    """The attack: delete every `reveal`, renumber, recompute every hash with plain SHA-256 and fix the
    head, exactly as keyturn's chain was built before it was keyed. Returns the first rewritten id."""
    con = sqlite3.connect(db)
    rows = con.execute(f"SELECT {COLS} FROM kt_audit ORDER BY id").fetchall()
    first = next(r[0] for r in rows if r[3] == "reveal")
    kept = [r for r in rows if r[3] != "reveal"]
    con.execute("DELETE FROM kt_audit")
    prev = GENESIS
    for new_id, row in enumerate(kept, start=1):
        h = unkeyed(new_id, row, prev)
        con.execute(f"INSERT INTO kt_audit ({COLS}, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (new_id, *row[1:], prev, h))
        prev = h
    con.execute("UPDATE kt_meta SET value = ? WHERE key = 'audit_head'",
                (json.dumps({"id": len(kept), "hash": prev}),))
    con.commit()
    con.close()
    return first


def test_rebuilt_chain_is_detected_by_audit_verify(home: Path) -> None:
    first = rebuild_without_reveals(home / "keyturn.db")
    with Vault.open(Settings(home=home)) as v:
        assert v.audit.list(action="reveal") == []  # the entries are really gone
        assert v.audit.verify() == 1  # rebuilt from genesis with the wrong hash: entry 1 is named
    env = {"KEYTURN_HOME": str(home), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_KEY_FILE": None, "KEYTURN_DATABASE_URL": None}
    r = CliRunner().invoke(app, ["audit", "verify"], env=env)
    assert r.exit_code == 1
    assert "audit chain broken at entry 1" in r.output
    assert first > 1  # the reveals came after entries the attacker had to rewrite too


def test_rebuilding_only_the_tail_names_its_first_entry(home: Path) -> None:
    """A careful attacker keeps the intact prefix and rewrites from the first reveal on."""
    db = home / "keyturn.db"
    con = sqlite3.connect(db)
    first = con.execute("SELECT MIN(id) FROM kt_audit WHERE action = 'reveal'").fetchone()[0]
    prev = con.execute("SELECT hash FROM kt_audit WHERE id = ?", (first - 1,)).fetchone()[0]
    con.execute("DELETE FROM kt_audit WHERE action = 'reveal'")
    tail = con.execute(f"SELECT {COLS} FROM kt_audit WHERE id > ? ORDER BY id", (first,)).fetchall()
    for new_id, row in enumerate(tail, start=first):
        h = unkeyed(new_id, row, prev)  # the chain key is not in the database
        con.execute("UPDATE kt_audit SET id = ?, prev_hash = ?, hash = ? WHERE id = ?",
                    (new_id, prev, h, row[0]))
        prev = h
    con.execute("UPDATE kt_meta SET value = ? WHERE key = 'audit_head'",
                (json.dumps({"id": first + len(tail) - 1, "hash": prev}),))
    con.commit()
    con.close()
    with Vault.open(Settings(home=home)) as v:
        assert v.audit.verify() == first


def test_truncating_the_newest_entries_is_detected(home: Path) -> None:
    """Deleting the newest entries and pointing the head at the survivor: the head has its own MAC."""
    db = home / "keyturn.db"
    con = sqlite3.connect(db)
    last = con.execute("SELECT MAX(id) FROM kt_audit WHERE action = 'reveal'").fetchone()[0]
    keep = con.execute("SELECT hash FROM kt_audit WHERE id = ?", (last - 1,)).fetchone()[0]
    con.execute("DELETE FROM kt_audit WHERE id >= ?", (last,))
    con.execute("UPDATE kt_meta SET value = ? WHERE key = 'audit_head'",
                (json.dumps({"id": last - 1, "hash": keep}),))
    con.commit()
    con.close()
    with Vault.open(Settings(home=home)) as v:
        assert v.audit.verify() == last - 1


def test_chain_and_value_hmacs_survive_rekey(home: Path) -> None:
    settings = Settings(home=home)
    with Vault.open(settings) as v:
        before = v.hmac_value(Secret("router-pw"))
        head = v.audit.head()
        new_key = MasterKey.generate()
        assert v.rekey(new_key).finished
    env = Settings(home=home, master_key=SecretStr(encode_key(new_key).reveal()))
    with Vault.open(env) as v:
        assert v.audit.verify() is None  # the chain key did not change: no entry was re-hashed
        assert v.hmac_value("router-pw") == before
        assert head is not None and {e.id: e.hash for e in v.audit.list()}[head[0]] == head[1]


class Siem:
    """A SIEM's view: what arrived, and the one check the shipped head makes possible."""

    kind: ClassVar[str] = "siem"

    def __init__(self) -> None:
        self.name = "siem"
        self.got: list[dict[str, object]] = []
        self.down_after: int | None = None

    @property
    def destination(self) -> str:
        return "memory"

    def render(self, event: AuditEvent) -> bytes:
        return render_jsonl(event).encode()

    async def send(self, messages: Sequence[bytes]) -> None:
        if self.down_after is not None and len(self.got) >= self.down_after:
            raise AuditSinkUnavailable("siem is down")
        self.got.extend(json.loads(m) for m in messages)

    async def aclose(self) -> None:
        pass

    def contradictions(self) -> list[int]:
        """Ids whose received hash differs from a head announced earlier for that id."""
        by_id = {e["id"]: e["hash"] for e in self.got}
        heads = {e["head"]["id"]: e["head"]["hash"] for e in self.got}  # type: ignore[index]
        return sorted(i for i, h in heads.items() if i in by_id and by_id[i] != h)


async def test_the_shipped_head_exposes_a_rebuilt_tail(home: Path, tmp_path: Path) -> None:
    siem = Siem()
    with Vault.open(Settings(home=home)) as v:
        newest = v.audit.head()
        assert newest is not None
        # A small spool and a SIEM outage: the newest entries wait in the database, unshipped.
        clock = [0.0]
        spool = Spool(tmp_path / "spool.sqlite", capacity=3)
        dispatcher = Dispatcher(v.storage, [Route(siem, spool, batch_size=3)], clock=lambda: clock[0])
        siem.down_after = 3
        await dispatcher.deliver_once()
        assert [e["id"] for e in siem.got] == [1, 2, 3]
        assert all(e["head"] == {"id": newest[0], "hash": newest[1]} for e in siem.got)
        assert spool.stats().cursor < newest[0]
        # The attacker removes the unshipped tail (the last reveal among it) and keyturn carries on.
        con = sqlite3.connect(home / "keyturn.db")
        con.execute("DELETE FROM kt_audit WHERE id > ?", (spool.stats().cursor,))
        con.execute("DELETE FROM kt_meta WHERE key = 'audit_head'")
        con.commit()
        con.close()
        for i in range(newest[0]):
            v.audit.append("filler", actor="t", details={"i": i})
        siem.down_after = None
        clock[0] += 3600  # past the back-off
        await dispatcher.deliver_once()
        await dispatcher.aclose()
    assert newest[0] in siem.contradictions()
