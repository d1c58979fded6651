"""Every statement a rotation sends has a SQLAlchemy cache key, on SQLite and on PostgreSQL.

A statement without one (a multi-VALUES INSERT, for instance) is compiled again on every execution;
on PostgreSQL the chain append is compiled while the installation-wide chain lock is held, so one such
statement once made every writer wait for a compile (issue 14). Driver SQL (``BEGIN IMMEDIATE``) has
no clause element and is not checked."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from keyturn.engine.outcome import Outcome
from tests.unit.engine_world import World
from tests.unit.test_journal_audit_steps import both_databases


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request, tmp_path):
    yield from both_databases(tmp_path, request.param)


def _uncached(engine: sa.Engine) -> tuple[list[str], list[int]]:
    """Statements executed on `engine` from now on whose cache key is None (their first line), and a
    one-element count of the clause statements checked."""
    found: list[str] = []
    checked = [0]

    def check(conn: sa.Connection, clause: Any, *_args: Any) -> None:
        if not isinstance(clause, sa.sql.ClauseElement):
            return
        checked[0] += 1
        if clause._generate_cache_key() is None:
            found.append(str(clause.compile(dialect=conn.dialect)).splitlines()[0])

    sa.event.listen(engine, "before_execute", check)
    return found, checked


@pytest.mark.asyncio
async def test_a_rotation_sends_only_statements_sqlalchemy_can_cache(world: World):
    engine = world.engine()
    found, checked = _uncached(world.vault.engine)
    first = await engine.rotate(world.user)
    second = await engine.rotate(world.user)       # the path of a scheduled rotation, with history
    await engine.aclose()
    assert first.outcome is Outcome.ROTATED and second.outcome is Outcome.ROTATED
    assert checked[0] > 20                         # the hook saw the rotation's statements
    assert found == []


def test_the_check_reports_a_statement_without_a_cache_key(world: World):
    """The hook above can fail: a multi-VALUES INSERT has no cache key."""
    found, _checked = _uncached(world.vault.engine)
    table = sa.table("kt_probe", sa.column("n"))
    statement = sa.insert(table).values([{"n": 1}, {"n": 2}])
    with world.vault.engine.connect() as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE kt_probe (n INTEGER)")
        conn.execute(statement)
    assert len(found) == 1 and found[0].startswith("INSERT INTO kt_probe")
