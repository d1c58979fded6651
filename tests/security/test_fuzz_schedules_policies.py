"""Fuzzing schedules and password policies (issue 12, "Also"): both come from outside — the CLI, the API,
a Keeper export — and are stored and re-read later. Anything may be refused with a `KeyturnError`
(`ConfigError`, `PolicyError`); nothing may crash, and what is accepted keeps working: a schedule
gives run times and survives its own round trip, a policy generates passwords that meet it.
"""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keyturn.errors import KeyturnError
from keyturn.policy import effective, generate, parse_policy
from keyturn.scheduler.schedules import KEEPER_TYPES, OCCURRENCES, from_meta, parse_schedule
from keyturn.targets.base import SecretRules
from keyturn.targets.meraki import MERAKI_AUTH_RULES

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- schedules --------------------------------------------------------------------------------------------

CRON_TOKENS = ["*", "?", "0", "1", "7", "12", "31", "59", "60", "99", "L", "W", "LW", "5L", "L-3", "15W",
               "2#3", "6#5", "*/15", "1-5", "5-1", "MON", "MON-FRI", "SUN#2", "JAN", "DEC-JAN", "1,15", "0/0",
               "*/0", "-", "#", "/", ",", "2026", "1970-2099", "@daily", "@reboot", "\u0661", "\u0663"]
cron_like = st.lists(st.sampled_from(CRON_TOKENS), min_size=1, max_size=8).map(" ".join)
durations = st.one_of(st.text(max_size=12),
                      st.builds(lambda n, u: f"{n}{u}", st.integers(-5, 10**12),
                                st.sampled_from(["s", "m", "h", "d", "w", "y", ""])))
keeper_json = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from([*KEEPER_TYPES, "daily", "HOURLY", ""]) | st.text(max_size=8),
    "intervalCount": st.integers(-3, 10**30) | st.text(max_size=5) | st.none() | st.booleans(),
    "utcTime": st.sampled_from(["02:00", "23:59", "24:00", "2:7", "", "12:00:61"]) | st.text(max_size=8),
    "time": st.sampled_from(["02:00:00", "25:00", "x"]) | st.integers(),
    "tz": st.sampled_from(["UTC", "Europe/Berlin", "America/St_Johns", "Nowhere/Land", ""]) | st.integers(),
    "weekday": st.sampled_from(["MONDAY", "sunday", "Fri", "FUNDAY"])
    | st.lists(st.text(max_size=6), max_size=3) | st.integers(),
    "occurrence": st.sampled_from([*OCCURRENCES, "FIFTH", 2]),
    "monthDay": st.integers(-1, 40) | st.text(max_size=3) | st.booleans(),
    "day": st.integers(0, 32),
    "month": st.sampled_from(["FEBRUARY", "feb", "2", "13", "Smarch"]) | st.integers(-1, 14),
})
any_spec = st.one_of(st.text(max_size=40), cron_like, durations.map(lambda d: f"every {d}"), keeper_json,
                     keeper_json.map(json.dumps), st.sampled_from(["{", "[]", '{"type": null}', "every", ""]))
any_zone = st.none() | st.sampled_from(["../../etc/passwd", "Europe/Nowhere", "", " "]) | st.text(max_size=12)
any_window = st.none() | st.sampled_from(["Fri-Mon 00:00-00:00", "Xyz 01:00-02:00", "01:00-25:00", ";"]) \
    | st.text(max_size=20)
any_anchor = st.none() | st.sampled_from(["9999-12-31T23:59:59+00:00", "2026-01-05", "not a time"]) \
    | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))

# Well-formed parts, for the properties of accepted schedules (DST zones with odd offsets on purpose)
GOOD_SPECS = ["0 2 * * *", "*/5 * * * *", "30 2 * * 0", "0 0 2 ? * MON-FRI", "0 30 1 L * ?",
              "0 0 3 ? * 6#2", "0 0 0 15W * ?", "0 0 12 ? * 2L", "every 30d", "12h", "@daily",
              {"type": "DAILY", "utcTime": "02:00"},
              {"type": "WEEKLY", "time": "02:30:00", "weekday": "SUNDAY", "intervalCount": 2},
              {"type": "MONTHLY_BY_DAY", "time": "01:00", "monthDay": 31},
              {"type": "MONTHLY_BY_WEEKDAY", "time": "03:30:00", "weekday": "SUNDAY", "occurrence": "LAST"},
              {"type": "YEARLY", "utcTime": "00:00", "month": "FEBRUARY", "monthDay": 29}]
GOOD_ZONES = ["UTC", "Europe/Berlin", "Australia/Lord_Howe", "Pacific/Chatham", "America/Sao_Paulo"]
GOOD_WINDOWS = ["Sat 01:00-05:00", "Mon-Fri 22:00-02:00", "Sun 02:00-03:00",
                "Mon 01:00-02:00; Tue 03:00-04:00"]
times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@FUZZ
@given(spec=any_spec, tz=any_zone, window=any_window, jitter=st.none() | durations, anchor=any_anchor)
def test_any_schedule_is_refused_or_accepted_never_a_crash(spec: Any, tz: str | None, window: str | None,
                                                           jitter: str | None, anchor: Any) -> None:
    try:
        sched = parse_schedule(spec, tz=tz, window=window, jitter=jitter, anchor=anchor)
    except KeyturnError:
        event("refused")
        return
    event(f"accepted {sched.kind}")
    check_accepted(sched, datetime.now(UTC))


@FUZZ
@given(spec=st.sampled_from(GOOD_SPECS), tz=st.sampled_from(GOOD_ZONES),
       window=st.none() | st.sampled_from(GOOD_WINDOWS), jitter=st.sampled_from([None, "10m", "1h", "3d"]),
       anchor=times, now=times)
def test_accepted_schedules_give_run_times_and_survive_their_round_trip(
        spec: Any, tz: str, window: str | None, jitter: str | None, anchor: datetime, now: datetime) -> None:
    try:
        sched = parse_schedule(spec, tz=tz, window=window, jitter=jitter, anchor=anchor)
    except KeyturnError as exc:
        assert "jitter" in str(exc)  # only a jitter as long as the interval is refused here
        event("refused: jitter")
        return
    event(f"accepted {sched.kind}")
    check_accepted(sched, now)


def check_accepted(sched: Any, now: datetime) -> None:
    again = from_meta(json.loads(json.dumps(sched.to_meta())))   # what the record stores, read back
    assert again.fingerprint == sched.fingerprint and again.describe() == sched.describe()
    try:
        slot = sched.next_slot(now)
        due, _deferred = sched.due(slot, "record-uid")
    except KeyturnError:
        event("no run time left")
        return
    assert slot > now
    assert due >= slot  # jitter and windows only ever delay


@FUZZ
@given(meta=st.one_of(st.none(), st.text(max_size=10), st.lists(st.integers(), max_size=2),
                      st.fixed_dictionaries({"spec": any_spec | st.sampled_from(GOOD_SPECS)}, optional={
                          "tz": any_zone, "window": any_window, "jitter": st.none() | durations,
                          "anchor": any_anchor.map(str)})))
def test_any_stored_schedule_is_refused_or_works(meta: Any) -> None:
    try:
        sched = from_meta(meta)
    except KeyturnError:
        return
    sched.describe()


# ---- policies ---------------------------------------------------------------------------------------------

counts = st.integers(-2, 50) | st.sampled_from(["5", " 7 ", "x", "", "1e3", "9" * 5000]) | st.booleans() \
    | st.none() | st.floats(allow_nan=True)
keeper_policy = st.fixed_dictionaries({}, optional={
    "length": st.integers(-1, 300) | st.sampled_from(["32", "10000", "9" * 5000]),
    "caps": counts, "lowercase": counts, "digits": counts, "special": counts,
    "specialChars": st.text(max_size=12) | st.integers(), "exclude": st.text(max_size=20) | st.none(),
    "firstCharLetter": st.booleans() | st.text(max_size=3),
}) | st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=5), max_size=3)
policies = st.one_of(st.none(), st.text(max_size=30), keeper_policy, keeper_policy.map(json.dumps),
                     st.lists(st.integers(-1, 40).map(str), min_size=1, max_size=6).map(",".join))
rules = st.sampled_from([
    MERAKI_AUTH_RULES, SecretRules(min_length=8, max_length=64, forbidden="?\"' "),
    SecretRules(min_length=1, max_length=25, allowed=string.ascii_letters + string.digits)])


@FUZZ
@given(spec=policies, target=rules)
def test_any_policy_is_refused_or_generates_passwords_that_meet_it(spec: Any, target: SecretRules) -> None:
    try:
        policy = effective(parse_policy(spec), target)
    except KeyturnError:
        event("refused")
        return
    event("accepted")
    password = generate(policy).reveal()
    assert len(password) == policy.length
    assert target.min_length <= len(password) <= target.max_length
    assert not set(password) & set(policy.exclude)
    assert not set(password) & set(target.forbidden)
    if target.allowed is not None:
        assert set(password) <= set(target.allowed)
    for minimum, alphabet in policy.classes():
        assert sum(c in alphabet for c in password) >= minimum
    if policy.first_char_letter:
        assert password[0].isalpha()
