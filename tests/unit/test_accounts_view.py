"""`keyturn.accounts_view`: every managed account with its last outcome, next due time and flags, and the
rotation listing — against a real vault and real rotations of the fake device (tests/unit/engine_world).

The fleet test clones one real record row 10,000 times (with journal rows and scheduler state) and
counts the SQL statements the listing runs with an SQLAlchemy event listener: a bound, never a time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from keyturn.accounts_view import AccountQuery, list_accounts, list_rotations, one_account
from keyturn.engine.journal import rotations
from keyturn.errors import ConfigError, TlsVerificationFailed
from keyturn.scheduler.assign import set_schedule
from keyturn.scheduler.state import ScheduleState, StateStore, schedule_state
from keyturn.secret import Secret
from keyturn.targets import peer_trust
from keyturn.targets.base import Account, Verdict
from keyturn.vault.storage import RecordRow
from tests.unit.engine_world import FakeTarget, World

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class UntrustedTarget(FakeTarget):
    """A device whose TLS certificate is not the pinned one: every request dies in the handshake."""

    kind: ClassVar[str] = "untrusted"

    async def verify(self, account: Account, secret: Secret) -> Verdict:
        peer_trust.note_failure(TlsVerificationFailed(f"{account.endpoint.host}: certificate fingerprint "
                                                      "does not match the pinned one", target=self.kind))
        return Verdict.INCONCLUSIVE


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):   # SQLite's explicit BEGIN hook
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def by_title(world: World, **kw: Any) -> dict[str, Any]:
    return {a.title: a for a in list_accounts(world.vault.engine, AccountQuery(**kw), now=NOW).accounts}


async def test_each_account_shows_its_last_outcome_next_due_and_flags(world: World) -> None:
    world.targets["untrusted"] = UntrustedTarget()
    good = world.user
    down = world.add_user("u2 down", "netops", "Wrong-Passw0rd-2")
    untrusted = world.add_user("u3 untrusted", "netops", "Any-Passw0rd-3", target="untrusted")
    world.add_user("u4 never", "netops", "Any-Passw0rd-4")
    plain = world.vault.add(type="pamUser", title="no profile")       # not an account
    set_schedule(world.vault, good, "every 30d", now=NOW - timedelta(days=1))
    engine = world.engine()
    try:
        for uid in (good, down, untrusted):
            await engine.rotate(uid)
    finally:
        await engine.aclose()
    StateStore(world.vault.engine).save([ScheduleState(record_uid=down, needs_attention=True, attempts=5,
                                                       attention_reason="5 failed attempts")])

    accounts = by_title(world)
    assert list(accounts) == ["u1", "u2 down", "u3 untrusted", "u4 never"]
    u1 = accounts["u1"]
    assert (u1.target, u1.site, u1.resource_uid, u1.last_outcome, u1.flags) == (
        "fake", "default", world.resource.uid, "rotated", [])
    assert u1.schedule == "every 30d" and u1.next_due == NOW + timedelta(days=29)
    assert u1.last_rotation_id == next(v.rotation_id for v in world.vault.versions(good)
                                       if str(v.state) == "current")
    assert accounts["u2 down"].last_outcome == "failed"
    assert accounts["u2 down"].flags == ["needs_attention"]
    assert accounts["u2 down"].attention == "5 failed attempts"
    assert accounts["u2 down"].next_due is None
    u3 = accounts["u3 untrusted"]
    assert (u3.last_outcome, u3.flags) == ("failed", ["stale_trust"])
    assert u3.last_reason.startswith("trust failure:") and u3.attention == u3.last_reason
    u4 = accounts["u4 never"]
    assert (u4.last_outcome, u4.last_at, u4.schedule, u4.next_due, u4.flags) == (None, None, None, None, [])

    # One account alone (the console's account page) is the same line as in the listing.
    for acc in accounts.values():
        assert one_account(world.vault.engine, acc.record_uid, now=NOW) == acc
    assert one_account(world.vault.engine, plain.uid) is None
    assert one_account(world.vault.engine, "no-such-uid") is None

    # One schema: record_uid, times with Z.
    data = u1.model_dump(mode="json")
    assert data["record_uid"] == good and data["next_due"] == "2026-03-31T12:00:00Z"
    assert data["last_at"].endswith("Z")


async def test_filters_outcome_site_flagged_and_paging(world: World) -> None:
    world.add_user("sw2 netops", "netops", "Passw0rd-2")
    east = world.add_user("sw3 east", "netops", "Passw0rd-3")
    world.vault.set_meta(east, "rotation", {**world.vault.get(east).meta["rotation"],
                                            "options": {"site": "dc-east"}})
    engine = world.engine()
    try:
        await engine.rotate(world.user)
    finally:
        await engine.aclose()
    assert list(by_title(world, filter="title~sw")) == ["sw2 netops", "sw3 east"]
    assert list(by_title(world, filter="target=fake,title=u1")) == ["u1"]
    assert list(by_title(world, outcome="rotated")) == ["u1"]
    assert list(by_title(world, outcome="never")) == ["sw2 netops", "sw3 east"]
    assert list(by_title(world, site="dc-east")) == ["sw3 east"]
    assert by_title(world, filter="title~nothing") == {}
    assert by_title(world, flagged=True) == {}
    page = list_accounts(world.vault.engine, limit=1, offset=1, now=NOW)
    assert [a.title for a in page.accounts] == ["sw3 east"] and page.total == 3
    for bad, message in ((AccountQuery(outcome="great"), "unknown outcome 'great'"),
                         (AccountQuery(filter="colour=red"), "bad filter term 'colour=red'")):
        with pytest.raises(ConfigError, match=message):
            list_accounts(world.vault.engine, bad)


async def test_unverified_and_invalid_schedule_are_flagged(world: World) -> None:
    world.dev.set(down_after_apply=1)          # the change lands, then the device is gone: unproved
    engine = world.engine()
    try:
        await engine.rotate(world.user)
    finally:
        await engine.aclose()
    broken = world.add_user("u2", "netops", "Passw0rd-2")
    world.vault.set_meta(broken, "schedule", {"spec": "0 25 * * *"})   # written around keyturn
    accounts = by_title(world)
    assert (accounts["u1"].last_outcome, accounts["u1"].flags) == ("unverified", ["unverified"])
    assert accounts["u1"].attention == accounts["u1"].last_reason != ""
    assert accounts["u2"].flags == ["schedule_invalid"]
    assert accounts["u2"].schedule == "0 25 * * *" and "invalid cron" in accounts["u2"].attention


def _clone_fleet(world: World, n: int) -> list[str]:
    """`n` copies of the user's record row (metadata, as keyturn stores it), each with a journal row and
    scheduler state: a fleet without n vault writes. Only metadata is read by the view."""
    engine = world.vault.engine
    with engine.begin() as conn:
        row = conn.execute(sa.select(RecordRow.__table__).where(RecordRow.uid == world.user)).mappings().one()
        east = dict(row, uid="res-east", title="east", title_key="east",
                    meta_json=json.dumps({"site": "dc-east"}))
        conn.execute(RecordRow.__table__.insert(), [east])
        uids = [uuid.uuid4().hex[:22] for _ in range(n)]
        specs = [{"spec": "every 30d", "tz": "UTC", "window": None, "jitter": None,
                  "anchor": "2026-03-01T00:00:00+00:00"}, {"spec": "0 2 * * *", "tz": "UTC", "window": None,
                                                            "jitter": "1h", "anchor": None}]
        rows = []
        for i, uid in enumerate(uids):
            meta = json.loads(row["meta_json"])
            if i % 2:
                meta["rotation"]["resource"] = "res-east"
            meta["schedule"] = specs[i % 2]
            rows.append(dict(row, uid=uid, title=f"sw{i:05d} netops", title_key=f"sw{i:05d} netops",
                             meta_json=json.dumps(meta)))
        conn.execute(RecordRow.__table__.insert(), rows)
        conn.execute(rotations.insert(), [
            {"id": uuid.uuid4().hex, "record_uid": uid, "title": f"sw{i:05d} netops", "target": "fake",
             "state": "done", "outcome": "rotated" if i % 3 else "failed", "reason": "", "last_step": "audit",
             "scripts": "[]", "started_at": NOW - timedelta(hours=1), "updated_at": NOW - timedelta(hours=1),
             "finished_at": NOW - timedelta(hours=1)} for i, uid in enumerate(uids)])
        conn.execute(schedule_state.insert(), [
            {"record_uid": uid, "needs_attention": i % 1000 == 0, "attention_reason": "x" if i % 1000 == 0
             else "", "updated_at": NOW} for i, uid in enumerate(uids)])
    return uids


def test_ten_thousand_accounts_in_three_statements(world: World) -> None:
    uids = _clone_fleet(world, 10_000)
    with statements(world.vault.engine) as seen:
        found = list_accounts(world.vault.engine, now=NOW)
    assert len(seen) == 3, seen
    assert found.total == 10_001 and len(found.accounts) == 10_001
    first = next(a for a in found.accounts if a.record_uid == uids[0])
    second = next(a for a in found.accounts if a.record_uid == uids[1])
    assert (first.last_outcome, first.flags, first.site, first.next_due) == (
        "failed", ["needs_attention"], "default", None)
    assert (second.last_outcome, second.site, second.schedule) == ("rotated", "dc-east", "0 2 * * * · UTC · "
                                                                   "jitter 1h")
    assert second.next_due is not None and NOW < second.next_due <= NOW + timedelta(days=1, hours=1)
    assert sum(1 for a in found.accounts if a.flags) == 10
    with statements(world.vault.engine) as seen:
        east = list_accounts(world.vault.engine, AccountQuery(site="dc-east", outcome="failed"), now=NOW)
    assert len(seen) == 3 and east.total == len([i for i in range(1, 10_000, 2) if i % 3 == 0])


async def test_rotation_listing_filters_and_pages(world: World) -> None:
    other = world.add_user("u2", "netops", "Wrong-Passw0rd-2")
    engine = world.engine()
    try:
        for _ in range(3):
            await engine.rotate(world.user)
        await engine.rotate(other)
    finally:
        await engine.aclose()
    e = world.vault.engine
    everything = list_rotations(e)
    assert everything.total == 4 and everything.rotations[0].title == "u2"
    assert [r.outcome for r in list_rotations(e, outcome="failed").rotations] == ["failed"]
    assert list_rotations(e, record_uid=world.user).total == 3
    page = list_rotations(e, record_uid=world.user, limit=2, offset=2)
    assert len(page.rotations) == 1 and page.total == 3
    assert page.rotations[0].id == list_rotations(e, record_uid=world.user).rotations[-1].id
    assert list_rotations(e, since=datetime.now(UTC) + timedelta(hours=1)).total == 0
    assert list_rotations(e, outcome="running").total == 0
    with pytest.raises(ConfigError, match="unknown outcome 'ok'"):
        list_rotations(e, outcome="ok")
    data = everything.rotations[0].model_dump(mode="json")
    assert data["record_uid"] == other and data["started_at"].endswith("Z")
