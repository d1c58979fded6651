"""`list_accounts` pages cut by the database (`keyturn.selection.sql_where`): for every filter the SQL
page is exactly the slice of the full listing (the Python path), on SQLite and PostgreSQL — titles in
mixed case and beyond ASCII, look-alike metadata that is not a profile, malformed tags, LIKE wildcards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keyturn.accounts_view import AccountQuery, list_accounts
from keyturn.config import Settings
from keyturn.engine.journal import rotations, write_tx
from keyturn.engine.profile import RotationProfile
from keyturn.selection import parse_filter, sql_where
from keyturn.vault import Vault
from keyturn.vault.api import NewRecord
from tests.pg import pg_schema_url

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TITLES = ("Alpha 1", "alpha 2", "ÄLPHA 3", "straße 4", "Strasse 5", "b_c%d 6", "sw01 netops", "SW01 deploy",
          "zeta", "Zeta two", "éclair", "Ω omega", "100% sure", "under_score")
QUERIES: tuple[AccountQuery, ...] = (
    AccountQuery(), AccountQuery(filter="title~alpha"), AccountQuery(filter="title~ä"),
    AccountQuery(filter="title=zeta"), AccountQuery(filter="title~%"), AccountQuery(filter="title~_"),
    AccountQuery(filter="title~STRASSE"), AccountQuery(filter="target=iosxe-ssh"),
    AccountQuery(filter="target~restconf,title~sw01"), AccountQuery(filter="type=PAMUSER"),
    AccountQuery(filter="type=login"), AccountQuery(tag="even"), AccountQuery(tag="odd", filter="title~a"),
    AccountQuery(tag="Bad Tag"), AccountQuery(tag="missing"), AccountQuery(filter="uid=nope"),
    AccountQuery(filter="resource~x"), AccountQuery(outcome="never"), AccountQuery(outcome="failed"),
    AccountQuery(outcome="rotated", filter="title~a"), AccountQuery(outcome="running", tag="even"),
    AccountQuery(outcome="needs_attention"),
)


@contextmanager
def _vault(tmp_path: Path, backend: str) -> Iterator[Vault]:
    if backend == "sqlite":
        vault = Vault.init(Settings(home=tmp_path / "home"))
        try:
            yield vault
        finally:
            vault.close()
        return
    with pg_schema_url("kt_paging") as url:
        vault = Vault.init(Settings(home=tmp_path / "home", database_url=url))
        try:
            yield vault
        finally:
            vault.close()


def _fleet(vault: Vault) -> None:
    device = vault.add(type="pamNetworkDevice", title="dev", meta={"site": "default"})
    specs = []
    for i, title in enumerate(TITLES):
        target = ("iosxe-ssh", "iosxe-restconf", "noop")[i % 3]
        meta: dict[str, Any] = {"rotation": RotationProfile(target=target, resource=device.uid).to_meta(),
                                "tags": ["even" if i % 2 == 0 else "odd"]}
        if i % 5 == 4:
            meta["tags"] = "even"                   # malformed: not a list, matches no tag
        specs.append(NewRecord(type="login" if i % 4 == 3 else "pamUser", title=title, meta=meta))
    # Look-alikes that are not managed accounts: "rotation" as text, or only inside another key.
    specs.append(NewRecord(type="pamUser", title="alpha not managed", meta={"rotation": "soon"}))
    nested = {"x": {"rotation": {"target": "noop"}}}
    specs.append(NewRecord(type="pamUser", title="alpha nested", meta=nested))
    uids = vault.add_many(specs)
    # Journal rows: the newest one decides (same start: the larger id wins), a running one has no outcome.
    rows = []
    for i, uid in enumerate(uids[:len(TITLES)]):
        if i % 3 == 0:
            continue                                                   # never rotated
        rows.append(_rotation(f"a{i:02d}", uid, "rotated", "done", NOW - timedelta(days=2)))
        if i % 3 == 1:
            rows.append(_rotation(f"b{i:02d}", uid, "failed", "failed", NOW - timedelta(days=1)))
        if i % 4 == 1:
            rows.append(_rotation(f"c{i:02d}", uid, None, "running", NOW - timedelta(days=1)))
    with write_tx(vault.engine) as conn:
        conn.execute(rotations.insert(), rows)


def _rotation(rid: str, uid: str, outcome: str | None, state: str, at: datetime) -> dict[str, Any]:
    return {"id": rid, "record_uid": uid, "title": "t", "target": "noop", "state": state, "outcome": outcome,
            "reason": "", "last_step": "", "started_at": at, "updated_at": at, "finished_at": at}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_sql_pages_equal_slices_of_the_full_listing(tmp_path: Path, backend: str) -> None:
    with _vault(tmp_path, backend) as vault:
        _fleet(vault)
        dialect = vault.engine.dialect.name
        for query in QUERIES:
            terms = parse_filter(query.filter) if query.filter else []
            assert sql_where(dialect, terms, query.tag) is not None, query     # the SQL path is taken
            full = list_accounts(vault.engine, query, now=NOW)
            for offset in (0, 3, 7, 20):
                page = list_accounts(vault.engine, query, limit=4, offset=offset, now=NOW)
                assert page.total == full.total, (query, offset)
                assert page.accounts == full.accounts[offset:offset + 4], (query, offset)
        assert list_accounts(vault.engine, AccountQuery(), now=NOW).total == len(TITLES)
        outcomes = {o: list_accounts(vault.engine, AccountQuery(outcome=o), now=NOW).total
                    for o in ("never", "rotated", "failed", "running")}
        assert all(outcomes.values()) and sum(outcomes.values()) == len(TITLES), outcomes


def test_terms_sql_cannot_say_exactly_fall_back_to_the_metadata_scan(tmp_path: Path) -> None:
    assert sql_where("sqlite", parse_filter("target=iösxe")) is None
    assert sql_where("mysql", []) is None
    with _vault(tmp_path, "sqlite") as vault:
        _fleet(vault)
        query = AccountQuery(filter="type=pämUser")
        assert list_accounts(vault.engine, query, limit=4).accounts == []
        seen: list[str] = []
        sa.event.listen(vault.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
        list_accounts(vault.engine, AccountQuery(filter="title~alpha"), limit=4)
        assert any("LIMIT" in s for s in seen)                 # cut by the database
