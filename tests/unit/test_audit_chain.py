"""Audit chain: tamper / delete / reorder detection and linear appends across processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.errors import AuditError
from keyturn.secret import Secret
from keyturn.vault import Vault


@pytest.fixture
def home(tmp_path: Path) -> Path:
    with Vault.init(Settings(home=tmp_path)) as v:
        for i in range(5):
            v.audit.append("test.event", actor="tester", details={"n": i})
    return tmp_path


def _sql(home: Path, *statements: str) -> None:
    con = sqlite3.connect(home / "keyturn.db")
    for st in statements:
        con.execute(st)
    con.commit()
    con.close()


def _verify(home: Path) -> int | None:
    with Vault.open(Settings(home=home)) as v:
        return v.audit.verify()


def test_intact_chain_verifies(home: Path) -> None:
    assert _verify(home) is None


def test_modified_entry_is_named(home: Path) -> None:
    _sql(home, "UPDATE kt_audit SET details = '{\"n\":99}' WHERE id = 5")
    assert _verify(home) == 5


def test_deleted_entry_breaks_the_next(home: Path) -> None:
    _sql(home, "DELETE FROM kt_audit WHERE id = 4")
    assert _verify(home) == 5


def test_deleted_newest_entry_is_detected(home: Path) -> None:
    _sql(home, "DELETE FROM kt_audit WHERE id = (SELECT MAX(id) FROM kt_audit)")
    assert _verify(home) == 7  # init wrote 2 entries, the fixture 5


def test_swapped_entries_are_detected(home: Path) -> None:
    cols = "ts, actor, action, record_uid, details, prev_hash, hash"
    _sql(
        home,
        f"CREATE TEMP TABLE t AS SELECT id, {cols} FROM kt_audit WHERE id IN (4, 5)",
        *(f"UPDATE kt_audit SET {c} = (SELECT {c} FROM t WHERE t.id = 9 - kt_audit.id) WHERE id IN (4, 5)"
          for c in cols.split(", ")),
    )
    assert _verify(home) == 4


def test_details_refuse_secrets(home: Path) -> None:
    with Vault.open(Settings(home=home)) as v, pytest.raises(AuditError, match="secret"):
        v.audit.append("x", actor="t", details={"pw": Secret("nope")})


def test_list_filters(home: Path) -> None:
    with Vault.open(Settings(home=home)) as v:
        entries = v.audit.list(action="test.event", limit=2)
        assert [e.details["n"] for e in entries] == [4, 3]
        assert entries[0].ts.tzinfo is not None


def _append_many(home: str, who: str, n: int) -> None:
    with Vault.open(Settings(home=Path(home))) as v:
        for i in range(n):
            v.audit.append("proc.event", actor=who, details={"i": i})


def test_appends_from_several_processes_stay_linear(home: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(home), f"p{k}", 15)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Vault.open(Settings(home=home)) as v:
        assert v.audit.verify() is None
        assert len(v.audit.list(action="proc.event", limit=1000)) == 45
