"""Units of work: vault, journal and lock calls on one thread commit together or not at all; batched
journal steps and audit appends keep the chain linear."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from keyturn.config import Settings
from keyturn.engine.journal import Journal, write_tx
from keyturn.engine.locks import LockManager
from keyturn.engine.outcome import StepStatus
from keyturn.errors import RecordNotFound, RotationLocked
from keyturn.secret import Secret
from keyturn.vault import Field, Vault
from keyturn.vault.versions import VersionState
from tests.pg import pg_schema_url


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    v = Vault.init(Settings(home=tmp_path))
    yield v
    v.close()


def _user(vault: Vault, title: str = "u") -> str:
    return vault.add(type="pamUser", title=title, fields=[Field("password", None, [Secret("old-pw")])]).uid


def test_unit_commits_vault_journal_and_lock_together(vault: Vault) -> None:
    uid = _user(vault)
    journal, locks = Journal(vault.engine), LockManager(vault.engine)
    with vault.unit():
        journal.start(rotation_id="r1", record_uid=uid, title="u", target="noop", lock_key="k")
        locks.acquire("k", "r1")
        version = vault.add_version(uid, Secret("candidate"), rotation_id="r1")
        journal.step("r1", "write_ahead", StepStatus.OK, "stored", audit=vault.audit, record_uid=uid,
                     actor="test", candidate_version=version)
    row = journal.get("r1")
    assert row is not None and row.last_step == "write_ahead" and row.candidate_version == version
    assert locks.holder("k") is not None
    assert [v.state for v in vault.versions(uid)] == [VersionState.PENDING, VersionState.CURRENT]


def test_an_error_inside_a_unit_leaves_nothing_behind(vault: Vault) -> None:
    uid = _user(vault)
    journal, locks = Journal(vault.engine), LockManager(vault.engine)
    audit_before = len(vault.audit.list())
    with pytest.raises(RecordNotFound), vault.unit():
        journal.start(rotation_id="r2", record_uid=uid, title="u", target="noop", lock_key="k")
        locks.acquire("k", "r2")
        vault.add_version(uid, Secret("candidate"), rotation_id="r2")
        vault.get("no such record")
    assert journal.get("r2") is None
    assert locks.holder("k") is None
    assert [v.state for v in vault.versions(uid)] == [VersionState.CURRENT]
    assert len(vault.audit.list()) == audit_before
    assert vault.audit.verify() is None


def test_a_refused_lock_rolls_the_unit_back(vault: Vault) -> None:
    uid = _user(vault)
    journal, locks = Journal(vault.engine), LockManager(vault.engine)
    locks.acquire("k", "holder")
    with pytest.raises(RotationLocked, match="being rotated"), vault.unit():
        journal.start(rotation_id="r3", record_uid=uid, title="u", target="noop", lock_key="k")
        locks.acquire("k", "r3")
    assert journal.get("r3") is None
    holder = locks.holder("k")
    assert holder is not None and holder.owner == "holder"


def test_units_are_per_thread(vault: Vault) -> None:
    """Another thread's calls do not join this thread's unit: they see only what was committed."""
    uid = _user(vault)
    seen: list[int] = []

    def other() -> None:
        seen.append(len(vault.versions(uid)))

    with vault.unit():
        vault.add_version(uid, Secret("candidate"), rotation_id="r4")
        reader = threading.Thread(target=other)
        reader.start()
        reader.join(timeout=10)
    assert seen == [1]          # the reader did not see the uncommitted version
    assert len(vault.versions(uid)) == 2


def test_nested_units_join_the_outer_one(vault: Vault) -> None:
    uid = _user(vault)
    with pytest.raises(RuntimeError, match="boom"), vault.unit():
        with vault.unit():
            vault.add_version(uid, Secret("candidate"), rotation_id="r5")
        raise RuntimeError("boom")
    assert len(vault.versions(uid)) == 1


def test_batched_steps_and_audit_entries_keep_order_and_chain(vault: Vault) -> None:
    uid = _user(vault)
    journal = Journal(vault.engine)
    journal.start(rotation_id="r6", record_uid=uid, title="u", target="noop", lock_key="k")
    with write_tx(vault.engine) as conn:
        journal.steps_on(conn, "r6", [
            ("verify_current", StepStatus.OK, "current secret logs in", {}),
            ("generate", StepStatus.OK, "generated", {}),
            ("write_ahead", StepStatus.OK, "stored", {"candidate_version": 2, "old_version": 1}),
        ], audit=vault.audit, record_uid=uid, actor="test")
        ids = vault.audit.append_many_on(conn, [("version.note", "test", uid, {"rotation_id": "r6"})])
    assert [s.step for s in journal.steps("r6")] == ["verify_current", "generate", "write_ahead"]
    assert journal.steps("r6")[0].message == "current secret logs in"
    row = journal.get("r6")
    assert row is not None and row.last_step == "write_ahead"
    assert (row.candidate_version, row.old_version) == (2, 1)
    newest = vault.audit.list(limit=4)
    assert [e.action for e in newest] == [
        "version.note", "rotation.write_ahead", "rotation.generate", "rotation.verify_current"]
    assert [e.id for e in newest] == list(range(ids[0], ids[0] - 4, -1))
    assert vault.audit.verify() is None
    vault.audit.append("after", actor="test")     # a single append continues the batched chain
    assert vault.audit.verify() is None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_vault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Vault]:
    """A vault on SQLite, then on PostgreSQL (skipped when it is not running)."""
    if request.param == "sqlite":
        v = Vault.init(Settings(home=tmp_path))
    else:
        with pg_schema_url("kt_unit") as url:
            v = Vault.init(Settings(home=tmp_path, database_url=url))
            yield v
            v.close()
            return
    yield v
    v.close()


@contextmanager
def _statements(vault: Vault) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(statement)

    sa.event.listen(vault.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(vault.engine, "before_cursor_execute", count)


def test_prefetched_records_and_versions_are_read_once_per_unit(any_vault: Vault) -> None:
    """`prefetch`: records by uid plus every record of a type, with their versions, in one query;
    `get`, `secret`, `versions` and `find(type=...)` of them in the unit send none. A record read by
    uid in a unit comes with its versions too."""
    vault = any_vault
    uid, admin = _user(vault), _user(vault, "admin")
    with vault.unit(), _statements(vault) as seen:
        vault.prefetch([uid, admin, "no-such-uid-0000000000"], types=["pamConfiguration"])
        assert len(seen) == 1   # the records, their versions joined in
        assert vault.get(uid).field("password") == Secret("old-pw")
        assert vault.secret(admin) == Secret("old-pw")
        assert [v.version for v in vault.versions(uid)] == [1]
        assert [r.title for r in vault.find(type="pamConfiguration")] == ["Default PAM Configuration"]
        assert len(seen) == 1
        # A version written in the unit is seen by the unit's later reads (its cache entry is dropped).
        vault.add_version(uid, Secret("candidate"), rotation_id="r7")
        assert [v.state for v in vault.versions(uid)] == [VersionState.PENDING, VersionState.CURRENT]
        # A record added in the unit is listed by `find`, not the prefetched listing.
        vault.add(type="pamConfiguration", title="second")
        assert [r.title for r in vault.find(type="pamConfiguration")] == ["Default PAM Configuration",
                                                                           "second"]
    with _statements(vault) as seen:
        vault.prefetch([uid])   # outside a unit: nowhere to keep them, nothing is read
    assert seen == []
    with vault.unit(write=False), _statements(vault) as seen:
        assert vault.get(uid).field("password") == Secret("old-pw")
        assert [v.state for v in vault.versions(uid)] == [VersionState.PENDING, VersionState.CURRENT]
        assert vault.secret(uid) == Secret("old-pw")
        assert vault.get(admin).title == "admin"
    assert len(seen) == 2   # the user with its versions, the admin with its versions
    with _statements(vault) as seen:   # outside a unit: one query per call all the same
        assert vault.get(uid).field("password") == Secret("old-pw")
        assert vault.reveal(uid, actor="test", version=2) == Secret("candidate")
    reads = [s for s in seen if "kt_secret_versions" in s and "kt_records" not in s]
    assert reads == [], reads   # the versions came with the record
    assert [e.details["version"] for e in vault.audit.list(action="reveal")] == [2]


def test_a_version_write_reads_and_bumps_the_record_in_one_statement(any_vault: Vault) -> None:
    """add_version: the record, its `updated_at` bump and the next number are one UPDATE … RETURNING;
    the number is right for a field whose slot is not its name, and for a record named by title."""
    vault = any_vault
    uid = _user(vault)
    before = vault.get(uid).updated_at
    with _statements(vault) as seen:
        assert vault.add_version(uid, Secret("v2"), rotation_id="r8") == 2
    writes = [s for s in seen if not s.startswith(("BEGIN", "SELECT value FROM kt_meta", "SELECT 1"))]
    assert [s.split()[0] for s in writes[:2]] == ["UPDATE", "INSERT"], writes
    assert vault.get(uid).updated_at > before
    assert vault.add_version("u", Secret("v3"), rotation_id="r9") == 3   # by title: the long way
    rec = vault.add(type="pamUser", title="labelled",
                    fields=[Field("password", "enable", [Secret("e1")])])
    assert vault.add_version(rec.uid, Secret("e2"), field="enable") == 2  # slot "password:enable"
    assert vault.add_version(rec.uid, Secret("n1"), field="fresh") == 1   # a new custom slot
    vault.promote(rec.uid, 2, field="enable")
    vault.promote("labelled", 1, field="fresh")
    assert vault.secret(rec.uid, "enable") == Secret("e2")
    assert vault.secret(rec.uid, "fresh") == Secret("n1")
    assert vault.audit.verify() is None


def test_record_values_are_the_record_columns_in_table_order() -> None:
    """The read paths build `RecordValues` from a row by position: its fields must be the table's
    columns, in order (a column added to `RecordRow` without it would shift every value)."""
    from keyturn.vault.storage import RecordRow, RecordValues

    assert RecordValues._fields == tuple(RecordRow.__table__.c.keys())


def test_a_record_read_in_a_unit_then_changed_in_it_is_read_back_changed(any_vault: Vault) -> None:
    """Reads in a unit keep Core rows; a change in the same unit loads the record to change it, and
    later reads of the unit (and after it) see the change, never the copy read before."""
    vault = any_vault
    uid, other = _user(vault), _user(vault, "other")
    with vault.unit():
        vault.prefetch([uid, other])
        assert vault.get(uid).meta == {}
        vault.set_meta(uid, "note", "changed")
        assert vault.get(uid).meta == {"note": "changed"}
        assert vault.meta(uid) == (uid, {"note": "changed"})
        # A version of a slot the record does not list yet: the record is changed to list it.
        assert vault.add_version(uid, Secret("n1"), field="fresh") == 1
        assert "fresh" in [f.label for f in vault.get(uid).custom]
        # The record changed in the unit goes the long way for its next version (nothing overwritten).
        assert vault.add_version(uid, Secret("c2"), rotation_id="r1") == 2
        assert vault.get(uid).meta == {"note": "changed"}
        vault.update(other, title="renamed")
        assert [r.title for r in vault.find(type="pamUser")] == ["renamed", "u"]
        vault.remove(other)
        assert [r.title for r in vault.find(type="pamUser")] == ["u"]
    rec = vault.get(uid)
    assert rec.meta == {"note": "changed"} and "fresh" in [f.label for f in rec.custom]
    assert [v.state for v in vault.versions(uid)] == [VersionState.PENDING, VersionState.CURRENT]
    assert vault.tampered() == [] and vault.audit.verify() is None
