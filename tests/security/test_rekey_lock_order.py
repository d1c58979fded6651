"""PostgreSQL: `vault rekey`'s final transaction locks record rows before the chain lock, as every writer
does, so it cannot deadlock with a rotation.

Before the fix the final transaction took the chain lock first and then rewrapped the rows added under
the old key since the batches. A rotation of such a record holds its row (the record is locked first)
and then waits for the chain lock to append its audit entry: each waited for the other, and PostgreSQL
aborted one of them as a deadlock. Here the rotation is a second `Vault` on the same database doing
what a rotation's write does: lock the record, then append to the chain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from keyturn.config import Settings
from keyturn.secret import Secret
from keyturn.vault import Field, Vault
from keyturn.vault.keys import MasterKey, encode_key
from tests.pg import pg_schema_url

pytestmark = pytest.mark.postgres

_CHAIN_LOCK = "audit_head"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Vault, Vault, str]]:
    """The rekeying vault, a second process's vault on the same database, and the database URL."""
    with pg_schema_url("kt_rekey") as url:
        settings = Settings(home=tmp_path, database_url=url)
        with Vault.init(settings) as v:
            for i in range(5):
                _add(v, f"before {i}")
        with Vault.open(settings) as rekeyer, Vault.open(settings) as other:
            yield rekeyer, other, url


def _final_statements(vault: Vault) -> tuple[list[str], Any]:
    """Statements `vault` sends from now on (their text), and the listener to remove."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(vault.engine, "before_cursor_execute", note)
    return seen, note


def _add(vault: Vault, title: str) -> str:
    return vault.add(type="pamUser", title=title, fields=[Field("password", None, [Secret(title)])]).uid


def _only(vault: Vault, url: str, key: MasterKey) -> Settings:
    """Settings that open the vault with `key` alone (the old key is gone with the switch)."""
    return Settings(home=vault.settings.home, database_url=url,
                    master_key=SecretStr(encode_key(key).reveal()))


def _waiting_on_a_lock(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()")).scalar_one())
    finally:
        engine.dispose()


def test_the_final_switch_locks_the_rows_before_the_chain(pair: tuple[Vault, Vault, str]) -> None:
    rekeyer, _other, _url = pair
    new_key = MasterKey.generate()
    assert not rekeyer.rekey(new_key, limit=0).finished       # the plan, no row yet
    seen, note = _final_statements(rekeyer)
    assert rekeyer.rekey(new_key).finished
    sa.event.remove(rekeyer.engine, "before_cursor_execute", note)
    rows = [i for i, s in enumerate(seen) if "kt_records" in s and "FOR UPDATE" in s]
    chain = [i for i, s in enumerate(seen) if _CHAIN_LOCK in s and "FOR UPDATE" in s]
    assert rows and chain and rows[-1] < chain[-1]


def test_a_rotation_holding_an_old_key_row_finishes_and_so_does_the_rekey(
        pair: tuple[Vault, Vault, str]) -> None:
    rekeyer, other, url = pair
    new_key = MasterKey.generate()
    assert not rekeyer.rekey(new_key, limit=0).finished
    locked, done, batches_done = threading.Event(), threading.Event(), threading.Event()
    added: list[str] = []
    failures: list[BaseException] = []

    def rotation() -> None:
        """Another process: add a record (old key, the rekey has not switched yet), then rotate it:
        lock its row, and once the rekey waits for that row, append to the chain and commit."""
        try:
            added.append(_add(other, "added during the switch"))
            with other.unit():
                other.lock_record(added[0])
                locked.set()
                deadline = time.monotonic() + 10
                while not _waiting_on_a_lock(url) and time.monotonic() < deadline:
                    time.sleep(0.02)
                other.audit.append("test.rotation", actor="test", record_uid=added[0])
        except BaseException as exc:   # reported by the test below
            failures.append(exc)
        finally:
            locked.set()
            done.set()

    def first_write_of_the_switch(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The final transaction's first lock (rows now, the chain before the fix; the lease takes the
        # chain lock too, before the batches): the rotation starts just before it, so its row is held
        # when the rekey wants it.
        if statement.startswith("UPDATE kt_records SET wrapped_key"):
            batches_done.set()    # the batches rewrap the rows there were; the switch comes next
            return
        first_lock = "FOR UPDATE" in statement and ("kt_records" in statement or _CHAIN_LOCK in statement)
        if first_lock and batches_done.is_set() and not locked.is_set():
            threading.Thread(target=rotation, daemon=True).start()
            assert locked.wait(30)

    sa.event.listen(rekeyer.engine, "before_cursor_execute", first_write_of_the_switch)
    try:
        progress = rekeyer.rekey(new_key)
    finally:
        sa.event.remove(rekeyer.engine, "before_cursor_execute", first_write_of_the_switch)
    assert done.wait(30)
    assert failures == []                     # no deadlock on the rotation's side either
    assert progress.finished and progress.remaining == 0
    with Vault.open(_only(rekeyer, url, new_key)) as fresh:
        assert fresh.key_id == new_key.key_id
        assert fresh.status().rekey_remaining == 0
        assert fresh.secret(added[0]).reveal() == "added during the switch"   # type: ignore[union-attr]
        assert fresh.audit.verify() is None
        assert "test.rotation" in [e.action for e in fresh.audit.list(limit=5)]


def test_a_record_added_after_the_rows_were_locked_is_rewrapped_by_a_retry(
        pair: tuple[Vault, Vault, str]) -> None:
    rekeyer, other, url = pair
    new_key = MasterKey.generate()
    assert not rekeyer.rekey(new_key, limit=0).finished
    added: list[str] = []

    def add_after_the_row_lock(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "kt_records" in statement and "FOR UPDATE" in statement and not added:
            # Another process adds a record under the old key before the chain lock is taken (its
            # add takes the chain lock, free until then): the switch must not strand it.
            worker = threading.Thread(target=lambda: added.append(_add(other, "slipped in")))
            worker.start()
            worker.join(30)

    sa.event.listen(rekeyer.engine, "after_cursor_execute", add_after_the_row_lock)
    try:
        progress = rekeyer.rekey(new_key)
    finally:
        sa.event.remove(rekeyer.engine, "after_cursor_execute", add_after_the_row_lock)
    assert added and progress.finished
    with Vault.open(_only(rekeyer, url, new_key)) as fresh:
        assert fresh.status().rekey_remaining == 0 and fresh.key_id == new_key.key_id
        assert fresh.secret(added[0]).reveal() == "slipped in"   # type: ignore[union-attr]
        assert fresh.audit.verify() is None
