"""Schedule specs: parsing, refusal reasons, next slots (cron, Quartz, Keeper JSON, intervals), DST,
jitter and windows. Expected times are written out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from keyturn.errors import ConfigError
from keyturn.scheduler.schedules import from_meta, jitter_fraction, parse_schedule, quartz_to_croniter
from keyturn.scheduler.window import parse_window

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def slots(spec: object, start: datetime, n: int, **kw: object) -> list[datetime]:
    sched = parse_schedule(spec, **kw)  # type: ignore[arg-type]
    out, t = [], start
    for _ in range(n):
        t = sched.next_slot(t)
        out.append(t)
    return out


@pytest.mark.parametrize(("spec", "kw", "reason"), [
    ("61 2 * * *", {}, "invalid cron expression '61 2 \\* \\* \\*'"),
    ("0 2 * *", {}, "neither cron"),
    ("0 2 31 2 *", {}, "no future run time"),
    ("0 0 2 * * MON", {}, "one of day-of-month and day-of-week must be '\\?'"),
    ("0 0 2 ? * ?", {}, "only one of"),
    ("0 0 2 LW * ?", {}, "'LW' and 'L-n'"),
    ("0 0 2 L-3 * ?", {}, "'LW' and 'L-n'"),
    ("0 0 2 ? * 8", {}, "numbers are 1-7"),
    ("0 2 * * *", {"tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ("0 2 * * *", {"window": "Sat 25:00-05:00"}, "bad start time '25:00'"),
    ("0 2 * * *", {"window": "Caturday 01:00-05:00"}, "unknown day 'Caturday'"),
    ("0 2 * * *", {"window": "sometimes"}, "bad maintenance window 'sometimes'"),
    ("0 2 * * *", {"jitter": "10 parsecs"}, "bad jitter"),
    ("every 30x", {}, "bad interval '30x'"),
    ("every 30s", {}, "shorter than the minimum"),
    ('{"type": "HOURLY", "utcTime": "02:00"}', {}, "type 'HOURLY' is not one of"),
    ('{"type": "DAILY"}', {}, "needs 'utcTime'"),
    ('{"type": "DAILY", "utcTime": "25:00"}', {}, "utcTime '25:00' is not a time"),
    ('{"type": "DAILY", "utcTime": "02:00", "intervalCount": 0}', {}, "intervalCount must be"),
    ('{"type": "WEEKLY", "utcTime": "02:00"}', {}, "needs 'weekday'"),
    ('{"type": "MONTHLY_BY_WEEKDAY", "utcTime": "02:00", "weekday": "MONDAY", "occurrence": "FIFTH"}', {},
     "occurrence 'FIFTH'"),
    ('{"type": "MONTHLY_BY_DAY", "utcTime": "02:00", "monthDay": 32}', {}, "between 1 and 31"),
    ('{"type": "YEARLY", "utcTime": "02:00", "monthDay": 30, "month": "FEBRUARY"}', {},
     "month 2 has no day 30"),
    ('{"type": "DAILY", "time": "02:00", "tz": "Europe/Berlin"}', {"tz": "UTC"}, "but --tz says 'UTC'"),
    ('{"type": "DAILY", ', {}, "schedule JSON is malformed"),
    ("", {}, "empty schedule"),
])
def test_invalid_specs_are_refused_with_a_reason(spec: str, kw: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_schedule(spec, **kw)  # type: ignore[arg-type]


def test_cron_in_a_time_zone() -> None:
    assert slots("0 2 * * 1-5", utc(2026, 1, 9, 12), 3, tz="Europe/Berlin") == [
        utc(2026, 1, 12, 1), utc(2026, 1, 13, 1), utc(2026, 1, 14, 1)]


def test_daily_0230_runs_once_on_dst_days() -> None:
    spring = slots("30 2 * * *", utc(2026, 3, 27, 12), 4, tz="Europe/Berlin")
    # 28 Mar CET (+1), 29 Mar 02:30 does not exist -> 03:30 CEST once, then CEST (+2)
    assert spring == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30),
                      utc(2026, 3, 31, 0, 30)]
    fall = slots("0 30 2 ? * *", utc(2026, 10, 23, 12), 4, tz="Europe/Berlin")
    # 25 Oct 02:30 happens twice; it runs once, at the first (CEST) occurrence
    assert fall == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30),
                    utc(2026, 10, 27, 1, 30)]


def test_hourly_cron_across_spring_forward_misses_no_real_hour() -> None:
    got = slots("30 * * * *", utc(2026, 3, 28, 23, 45), 4, tz="Europe/Berlin")
    assert got == [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30),
                   utc(2026, 3, 29, 3, 30)]
    assert len(set(got)) == 4


@pytest.mark.parametrize(("quartz", "cron"), [
    ("0 0 2 ? * MON-FRI", "0 0 2 * * MON-FRI"),
    ("0 0 2 ? * 2-6", "0 0 2 * * 1-5"),
    ("0 15 10 ? * 6L", "0 15 10 * * L5"),
    ("0 15 10 ? * 6#3", "0 15 10 * * 5#3"),
    ("0 0 12 1/5 * ?", "0 0 12 1/5 * *"),
    ("0 0 2 L * ? 2027", "0 0 2 L * * 2027"),
    ("0 0 2 15W * ? *", "0 0 2 15W * *"),
    ("0 0 2 ? * 1,7", "0 0 2 * * 0,6"),
    ("0 0 2 ? * FRIL", "0 0 2 * * L5"),
    ("0 0 2 ? * L", "0 0 2 * * 6"),
    ("0 0 2 ? * MON#2", "0 0 2 * * MON#2"),
])
def test_quartz_translation(quartz: str, cron: str) -> None:
    assert quartz_to_croniter(quartz) == cron


def test_quartz_features_compute_right_days() -> None:
    assert slots("0 15 10 ? * 6L", utc(2026, 1, 1), 2) == [utc(2026, 1, 30, 10, 15),
                                                            utc(2026, 2, 27, 10, 15)]
    assert slots("0 15 10 ? * 6#3", utc(2026, 1, 1), 2) == [utc(2026, 1, 16, 10, 15),
                                                             utc(2026, 2, 20, 10, 15)]
    assert slots("0 0 2 15W * ?", utc(2026, 2, 1), 1) == [utc(2026, 2, 16, 2)]  # 15 Feb 2026 is a Sunday
    assert slots("30 0 2 L * ? 2027", utc(2026, 1, 1), 1) == [utc(2027, 1, 31, 2, 0, 30)]


def test_keeper_json_objects() -> None:
    anchor = utc(2026, 1, 5)  # Monday
    assert slots({"type": "DAILY", "utcTime": "02:00", "intervalCount": 3}, anchor, 3, anchor=anchor) == [
        utc(2026, 1, 5, 2), utc(2026, 1, 8, 2), utc(2026, 1, 11, 2)]
    weekly = {"type": "WEEKLY", "time": "02:30:00", "tz": "Europe/Berlin", "weekday": "WEDNESDAY",
              "intervalCount": 2}
    assert slots(weekly, anchor, 2, anchor=anchor) == [utc(2026, 1, 7, 1, 30), utc(2026, 1, 21, 1, 30)]
    by_day = {"type": "MONTHLY_BY_DAY", "utcTime": "03:00", "monthDay": 31}
    assert slots(by_day, utc(2026, 3, 1), 3) == [utc(2026, 3, 31, 3), utc(2026, 4, 30, 3),
                                                 utc(2026, 5, 31, 3)]
    by_weekday = {"type": "MONTHLY_BY_WEEKDAY", "utcTime": "03:00", "weekday": "TUE", "occurrence": "SECOND",
                  "intervalCount": 3}
    assert slots(by_weekday, anchor, 2, anchor=anchor) == [utc(2026, 1, 13, 3), utc(2026, 4, 14, 3)]
    last = {"type": "MONTHLY_BY_WEEKDAY", "utcTime": "03:00", "weekday": "FRIDAY", "occurrence": "LAST"}
    assert slots(last, anchor, 1) == [utc(2026, 1, 30, 3)]
    yearly = {"type": "YEARLY", "utcTime": "04:00", "monthDay": 29, "month": "FEBRUARY"}
    assert slots(yearly, anchor, 3) == [utc(2026, 2, 28, 4), utc(2027, 2, 28, 4), utc(2028, 2, 29, 4)]


def test_keeper_json_as_text_and_utc_time_keeps_window_zone() -> None:
    sched = parse_schedule('{"type": "DAILY", "utcTime": "23:30"}', tz="Europe/Berlin",
                           window="00:00-01:00")
    slot = sched.next_slot(utc(2026, 1, 10))
    assert slot == utc(2026, 1, 10, 23, 30)  # utcTime is UTC even with --tz
    assert sched.due(slot, "uid") == (slot, False)  # 00:30 Berlin is inside the Berlin window


def test_interval_grid_is_fixed_by_the_anchor() -> None:
    anchor = utc(2026, 1, 1, 8)
    sched = parse_schedule("every 30d", anchor=anchor)
    assert sched.next_slot(utc(2026, 1, 1, 8)) == utc(2026, 1, 31, 8)
    assert sched.next_slot(utc(2026, 2, 10)) == utc(2026, 3, 2, 8)
    assert parse_schedule("1h30m").next_slot(utc(2026, 1, 1)) == utc(2026, 1, 1, 1, 30)


def test_meta_round_trip_and_fingerprint() -> None:
    sched = parse_schedule("0 2 * * *", tz="Europe/Berlin", window="Sat 01:00-05:00", jitter="10m",
                           anchor=utc(2026, 1, 1))
    meta = sched.to_meta()
    assert meta == {"spec": "0 2 * * *", "tz": "Europe/Berlin", "window": "Sat 01:00-05:00", "jitter": "10m",
                    "anchor": "2026-01-01T00:00:00+00:00"}
    again = from_meta(meta)
    assert again.fingerprint == sched.fingerprint
    assert from_meta({**meta, "jitter": "11m"}).fingerprint != sched.fingerprint
    with pytest.raises(ConfigError, match="malformed"):
        from_meta({"every": "30d"})


def test_jitter_is_a_fixed_fraction_per_record() -> None:
    sched = parse_schedule("0 2 * * *", jitter="1h")
    slot = utc(2026, 1, 1, 2)
    fracs = [jitter_fraction(f"uid-{i}") for i in range(200)]
    assert all(0 <= f < 1 for f in fracs) and len(set(fracs)) == 200
    dues = [sched.due(slot, f"uid-{i}")[0] for i in range(200)]
    assert all(slot <= d < slot + timedelta(hours=1) for d in dues)
    assert max(dues) - min(dues) > timedelta(minutes=45)  # spread, not bunched
    assert sched.due(slot, "uid-7") == sched.due(slot, "uid-7")


def test_window_crossing_midnight_and_days() -> None:
    win = parse_window("Mon-Fri 22:00-02:00", UTC)
    assert win.contains(utc(2026, 1, 9, 23))           # Friday night
    assert win.contains(utc(2026, 1, 10, 1, 59))       # ... into Saturday morning
    assert not win.contains(utc(2026, 1, 10, 2))       # end is exclusive
    assert not win.contains(utc(2026, 1, 10, 23))      # Saturday does not open
    assert win.next_opening(utc(2026, 1, 10, 12)) == (utc(2026, 1, 12, 22), utc(2026, 1, 13, 2))
    several = parse_window("Sat,Sun 00:00-06:00; Wed 12:00-13:00", UTC)
    assert several.next_opening(utc(2026, 1, 5)) == (utc(2026, 1, 7, 12), utc(2026, 1, 7, 13))
    assert parse_window("02:00-04:00", UTC).contains(utc(2026, 1, 6, 3))
    assert parse_window("daily 00:00-00:00", UTC).contains(utc(2026, 1, 6, 17))


def test_window_in_the_schedule_zone_and_deferral() -> None:
    sched = parse_schedule("0 12 * * *", tz="Europe/Berlin", window="Sat 01:00-05:00", jitter="2h")
    slot = sched.next_slot(utc(2026, 1, 5))             # Monday 12:00 Berlin
    due, deferred = sched.due(slot, "rec")
    assert deferred
    assert utc(2026, 1, 10, 0) <= due < utc(2026, 1, 10, 2)  # Sat 01:00-03:00 Berlin = 00:00-02:00 UTC
    assert sched.absorb_until(due) == utc(2026, 1, 10, 4)
    assert sched.earliest(utc(2026, 1, 10, 1)) == utc(2026, 1, 10, 1)
    assert sched.earliest(utc(2026, 1, 10, 5)) == utc(2026, 1, 17, 0)


def test_an_empty_tz_in_keeper_json_says_nothing_and_survives_its_round_trip() -> None:
    """Found by fuzzing: `"tz": ""` was accepted as UTC, then refused when read back with tz UTC."""
    from keyturn.scheduler.schedules import from_meta, parse_schedule

    sched = parse_schedule({"type": "DAILY", "utcTime": "02:00", "tz": ""})
    again = from_meta(sched.to_meta())
    assert again.to_meta() == sched.to_meta()


def test_a_window_whose_only_weekly_opening_falls_in_a_dst_gap_opens_the_week_after() -> None:
    """Found by fuzzing: Sun 02:00-03:00 in Europe/Berlin does not exist on 2026-03-29 (clocks jump from
    02:00 to 03:00); asked on the Sunday before, the next opening is two weeks away, not "never"."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from keyturn.scheduler.window import parse_window

    window = parse_window("Sun 02:00-03:00", ZoneInfo("Europe/Berlin"))
    start, end = window.next_opening(datetime(2026, 3, 22, 2, 30, tzinfo=UTC))
    assert start == datetime(2026, 4, 5, 0, 0, tzinfo=UTC) and end == datetime(2026, 4, 5, 1, 0, tzinfo=UTC)
