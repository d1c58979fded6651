"""The dashboard over HTTP and its numbers (real app, real SQLite vault): counts by last outcome, the
flags, rotations due in 24 h, failures in 24 h, the 30-day chart drawn as inline SVG (no script)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyturn.console.pages.dashboard import overview
from keyturn.dispatch.ledger import NewRequest, RequestLedger
from keyturn.engine.journal import rotations, write_tx
from keyturn.scheduler.assign import set_schedule
from tests.console.console_world import console_client, signin
from tests.unit.api_world import Api, open_api
from tests.unit.engine_world import World, open_world

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _journal(world: World, rid: str, uid: str, outcome: str, started: datetime, state: str = "done") -> None:
    with write_tx(world.vault.engine) as conn:
        conn.execute(rotations.insert().values(
            id=rid, record_uid=uid, title=world.vault.get(uid).title, target="fake", state=state,
            outcome=outcome, reason="device refused the password (policy)" if outcome == "failed" else "",
            last_step="audit", started_at=started, updated_at=started, finished_at=started))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    for w in open_world(tmp_path):
        u2 = w.add_user("u2", "netops2", "Passw0rd-2")
        w.add_user("u3", "netops3", "Passw0rd-3")
        _journal(w, "r-old", w.user, "rotated", NOW - timedelta(days=40))         # outside the chart
        _journal(w, "r-ok", w.user, "rotated", NOW - timedelta(days=2))
        _journal(w, "r-bad", w.user, "failed", NOW - timedelta(hours=3))
        _journal(w, "r-unv", u2, "unverified", NOW - timedelta(hours=30), state="unverified")
        set_schedule(w.vault, "u3", "every 1h", now=NOW - timedelta(minutes=30))
        yield w


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    async for a in open_api(world):
        yield a


def test_the_overview_counts_flags_due_failures_and_days(world: World) -> None:
    o = overview(world.vault.engine, broker=False, now=NOW)
    assert o.total == 3
    assert dict(o.by_outcome) == {"failed": 1, "unverified": 1, "never": 1}
    assert o.flags["unverified"] == 1 and o.flags["needs_attention"] == 0
    assert [a.title for a in o.due] == ["u3"] and o.due_count == 1
    assert [r["id"] for r in o.failures] == ["r-bad"] and o.failure_count == 1   # r-unv is 30 h old
    assert len(o.bars) == 30 and o.bars[-1].day == NOW.date()
    by_day = {b.day: (b.ok, b.failed) for b in o.bars}
    assert by_day[NOW.date()] == (0, 1) and by_day[(NOW - timedelta(days=2)).date()] == (1, 0)
    assert by_day[(NOW - timedelta(hours=30)).date()] == (0, 1)                  # unverified counts as failed
    assert sum(b.ok + b.failed for b in o.bars) == 3 and o.peak == 1
    tallest = max(o.bars, key=lambda b: b.ok_h + b.failed_h)
    assert tallest.ok_h + tallest.failed_h > 0 and all(b.x >= 0 for b in o.bars)


async def test_the_dashboard_page_shows_them_without_script(api: Api) -> None:
    async with console_client(api) as c:
        await signin(c, api.tokens["auditor"])
        page = await c.get("/console/")
    assert page.status_code == 200
    text = page.text
    assert 'href="/console/accounts?outcome=failed">1</a>' in text
    assert "No broker configured" in text
    assert "<script" not in text and 'role="img"' in text
    assert len(re.findall(r"<title>\d{4}-\d\d-\d\d: ", text)) == 30   # one labelled bar group a day
    assert "<svg" in text and "Rotations per day, last 30 days" in text


async def test_sites_show_their_queues_and_a_site_without_a_live_worker(api: Api) -> None:
    ledger = RequestLedger(api.world.vault.engine)
    ledger.create([NewRequest(id="q1", record_uid=api.world.user, title="u1", site="dc-east")], actor="test")
    ledger.heartbeat("w1", site="dc-west", concurrency=4, in_flight=0)
    async with console_client(api) as c:
        await signin(c, api.tokens["operator"])
        text = (await c.get("/console/")).text
    east = text[text.index("<td>dc-east</td>"):]
    assert '<tr class="stuck">' in text and "no live worker" in east[:400]
    assert "<td>dc-west</td>" in text and "No broker configured" not in text
