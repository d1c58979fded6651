"""1,000 records on mixed schedules over a simulated 90 days (fake clock, real vault + state table).

Every expected run time is computed here independently of the scheduler (arithmetic, croniter on
UTC, zoneinfo), then compared with what the fake `rotate` saw: each record rotates exactly when due
(within its jitter / window rules), none twice, none missed, windows respected.
"""

from __future__ import annotations

import time as wall
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from keyturn.config import Settings
from keyturn.scheduler import FakeClock, Scheduler
from keyturn.vault import Vault
from tests.unit.scheduler_world import FakeRotate, add_scheduled, advance_to, running

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
END = T0 + timedelta(days=90)
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    with Vault.init(Settings(home=tmp_path)) as v:
        yield v


def cron_utc(expr: str) -> list[datetime]:
    it = croniter(expr, T0.replace(tzinfo=None))
    out = []
    while (t := it.get_next(datetime).replace(tzinfo=UTC)) <= END:
        out.append(t)
    return out


def days() -> Iterator[date]:
    d = T0.date()
    while d <= END.date():
        yield d
        d += timedelta(days=1)


def at(d: date, h: int, m: int = 0, tz: ZoneInfo | None = None) -> datetime:
    return datetime(d.year, d.month, d.day, h, m, tzinfo=tz or UTC).astimezone(UTC)


def weekly(weekday: int, h: int, m: int, tz: ZoneInfo | None = None) -> list[datetime]:
    return [t for d in days() if d.weekday() == weekday if T0 < (t := at(d, h, m, tz)) <= END]


def make_case(i: int) -> tuple[dict[str, object], dict[str, object]]:
    """(schedule spec, expectation) for record i. Expectation: exact times, or slots + jitter span,
    or a window check with the expected number of runs."""
    cat, k = i % 9, i // 9
    # Like real fleets, schedules cluster on round times, so many records fall due at once.
    h, m = (k % 12) * 2, (k % 4) * 15
    if cat == 0:
        every = timedelta(days=5 + k % 8) + timedelta(hours=k % 2)
        n = (END - T0) // every
        return ({"spec": f"every {int(every.total_seconds() // 3600)}h", "anchor": T0},
                {"exact": [T0 + every * j for j in range(1, n + 1)]})
    if cat == 1:
        slots = [T0 + timedelta(days=7) * j for j in range(1, 14)]
        return ({"spec": "every 7d", "anchor": T0, "jitter": "1h"},
                {"slots": slots, "jitter": timedelta(hours=1)})
    if cat == 2:
        return {"spec": f"{m} {h} 1,15 * *"}, {"exact": cron_utc(f"{m} {h} 1,15 * *")}
    if cat == 3:
        return {"spec": f"{m} {h} * * {k % 7}"}, {"exact": cron_utc(f"{m} {h} * * {k % 7}")}
    if cat == 4:  # Quartz numbering: 2 = MON, 5 = THU
        return ({"spec": f"0 {m} {h} ? * {2 + 3 * (k % 2)} *"},
                {"exact": weekly(3 * (k % 2), h, m)})
    if cat == 5:
        n = 5 + k % 6
        return ({"spec": {"type": "DAILY", "intervalCount": n, "utcTime": f"{h:02d}:{m:02d}"}, "anchor": T0},
                {"exact": [t for j in range(0, 91, n)
                           if T0 < (t := at(T0.date() + timedelta(days=j), h, m)) <= END]})
    if cat == 6:  # daily slots at 00:00, all outside the window: one run per Saturday, 01:00-01:30
        sats = [at(d, 1) for d in days() if d.weekday() == 5 and at(d, 1) <= END]
        return ({"spec": "every 1d", "anchor": T0, "window": "Sat 01:00-05:00", "jitter": "30m"},
                {"openings": [(s, s + timedelta(minutes=30)) for s in sats]})
    if cat == 7:  # noon slots on Wednesdays, window Mon-Fri 22:00-02:00: that day's opening, at 22:00
        return ({"spec": "0 12 * * 3", "window": "Mon-Fri 22:00-02:00"},
                {"exact": [t + timedelta(hours=10) for t in cron_utc("0 12 * * 3")
                           if t + timedelta(hours=10) <= END]})
    # Sundays 02:30 Berlin wall time; 29 March 2026 (spring forward) runs once, at 03:30 CEST.
    return ({"spec": "30 2 * * 0", "tz": "Europe/Berlin"},
            {"exact": weekly(6, 2, 30, BERLIN)})


def check(got: list[datetime], want: dict[str, object]) -> str | None:
    """Why `got` (the run times of one record) is wrong, or None."""
    if "exact" in want:
        exact = want["exact"]
        assert isinstance(exact, list)
        return None if got == exact else f"want {len(exact)}: {exact[:2]}..., got {len(got)}: {got[:2]}..."
    if "slots" in want:
        span, slots = want["jitter"], want["slots"]
        assert isinstance(span, timedelta) and isinstance(slots, list)
        slots = [s for s in slots if s + span <= END]
        if len(got) != len(slots) or not all(s <= g < s + span for g, s in zip(got, slots, strict=True)):
            return f"jittered runs {got[:2]}... not one per slot {slots[:2]}... within {span}"
        if len({g - s for g, s in zip(got, slots, strict=True)}) != 1:
            return "jitter offset is not fixed per record"
        return None
    openings = want["openings"]
    assert isinstance(openings, list)
    if len(got) != len(openings) or not all(s <= g < e for g, (s, e) in zip(got, openings, strict=True)):
        return f"windowed runs {got[:2]}... not one per opening {openings[:2]}..."
    return None


async def test_thousand_records_ninety_days(vault: Vault) -> None:
    cases = [make_case(i) for i in range(1000)]
    uids = add_scheduled(vault, [c[0] for c in cases])
    clock = FakeClock(T0)
    rotate = FakeRotate(clock)
    sched = Scheduler(vault, rotate, clock=clock, concurrency=16)
    began = wall.perf_counter()
    async with running(sched):
        await advance_to(sched, clock, END)
    elapsed = wall.perf_counter() - began
    print(f"\n{len(rotate.calls)} rotations of 1000 records over 90 simulated days in {elapsed:.1f}s")

    problems = [f"{uid}: {why}" for uid, (_, want) in zip(uids, cases, strict=True)
                if (why := check(rotate.times(uid), want))]
    assert not problems, f"{len(problems)} records wrong, e.g. {problems[:3]}"
    assert len(rotate.calls) > 9_000
    assert len(rotate.calls) == len(set(rotate.calls))  # none twice
    assert rotate.max_active["*"] <= 16
    assert sched.queue_depth() == 1000
    nxt = sched.next_due()
    assert all(t > END for _, t in nxt) and [t for _, t in nxt] == sorted(t for _, t in nxt)
