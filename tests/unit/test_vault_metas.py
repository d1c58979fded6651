"""`Vault.metas`: the metadata of many records in a few queries, each ref answered as `meta` would
answer it (its uid and meta, or the error `meta` raises), in the order asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from keyturn.config import Settings
from keyturn.errors import AmbiguousRecord, RecordNotFound, RecordTampered
from keyturn.vault import Vault
from keyturn.vault.api import NewRecord


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    v = Vault.init(Settings(home=tmp_path))
    yield v
    v.close()


def _selects(vault: Vault) -> list[str]:
    seen: list[str] = []
    sa.event.listen(vault.engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_a: seen.append(statement))
    return seen


def test_every_ref_answered_in_order_as_meta_answers_it(vault: Vault) -> None:
    a = vault.add(type="login", title="alpha", meta={"site": "a"}).uid
    b = vault.add(type="login", title="beta", meta={"site": "b"}).uid
    vault.add(type="login", title="twin")
    vault.add(type="login", title="Twin", allow_duplicate=True)
    bad = vault.add(type="login", title="bent", meta={"site": "c"}).uid
    with vault.storage.session(write=True) as s:   # changed behind keyturn's back
        s.execute(sa.text("UPDATE kt_records SET meta_json = '{\"site\": \"x\"}' WHERE uid = :u"), {"u": bad})

    got = vault.metas([b, "ALPHA", "no-such-record", a, "twin", bad, b, ""])

    assert got[0] == (b, {"site": "b"}) and got[3] == (a, {"site": "a"}) and got[6] == got[0]
    assert got[1] == (a, {"site": "a"})                       # a title, case-insensitive, as `meta`
    assert isinstance(got[2], RecordNotFound) and "no-such-record" in str(got[2])
    assert isinstance(got[4], AmbiguousRecord)
    assert isinstance(got[5], RecordTampered) and got[5].record_uid == bad
    assert isinstance(got[7], RecordNotFound)
    with pytest.raises(RecordTampered):                       # the same verdict `meta` gives
        vault.meta(bad)


def test_a_thousand_records_by_uid_take_three_queries(vault: Vault) -> None:
    uids = vault.add_many([NewRecord(type="login", title=f"r{i}", meta={"n": i}) for i in range(1001)])
    seen = _selects(vault)
    got = vault.metas(list(reversed(uids)))
    assert [m for _uid, m in got] == [{"n": i} for i in reversed(range(1001))]   # type: ignore[misc]
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 3   # 500 + 500 + 1
