"""keyturn.durations: the one duration syntax (schedules, jitter, token lifetimes, audit ages)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyturn.api.tokens import parse_duration as token_lifetime
from keyturn.cli.audit_export import parse_when
from keyturn.durations import MAX_DURATION, format_duration, looks_like_duration, parse_duration
from keyturn.errors import ConfigError
from keyturn.scheduler.schedules import parse_schedule

# Every form one of the three former parsers accepted (scheduler/tz: compound, spaced, any case;
# api/tokens: one unit, 1-6 digits; cli/audit_export: one unit, spaces around), and the new ones.
ACCEPTED = [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90s", timedelta(seconds=90)),
    ("2w", timedelta(weeks=2)), ("45m", timedelta(minutes=45)), ("1h30m", timedelta(minutes=90)),
    ("1h 30m", timedelta(minutes=90)), (" 7 d ", timedelta(days=7)), ("1D", timedelta(days=1)),
    ("1W2D", timedelta(days=9)), ("999999s", timedelta(seconds=999999)), ("0s", timedelta(0)),
    ("007d", timedelta(days=7)), ("3650d", MAX_DURATION), ("1d12h", timedelta(hours=36)),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_every_old_form_is_accepted(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert looks_like_duration(text.strip())


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty duration"), ("   ", "empty duration"), ("forever", "bad duration 'forever'"),
    ("30", "bad duration '30'"), ("d", "bad duration"), ("1h30", "bad duration"), ("1.5h", "bad duration"),
    ("-1d", "bad duration"), ("1y", "bad duration"), ("3651d", "longer than the maximum of 3650d"),
    ("9" * 5000 + "d", "longer than the maximum"), ("x" * 100, "bad duration 'xxxx"),
])
def test_bad_durations_say_the_form(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_duration(text)
    assert len(str(info.value)) < 200


def test_positive_refuses_zero_and_names_what() -> None:
    with pytest.raises(ConfigError, match="lifetime '0d' must be longer than zero"):
        parse_duration("0d", what="lifetime", positive=True)


def test_format_round_trips() -> None:
    for text, delta in ACCEPTED:
        if delta:
            assert parse_duration(format_duration(delta)) == delta, text
    assert format_duration(timedelta(days=14)) == "2w"
    assert format_duration(timedelta(minutes=90)) == "90m"


def test_token_lifetimes_use_it() -> None:
    assert token_lifetime("90d") == timedelta(days=90)
    assert token_lifetime("1h30m") == timedelta(minutes=90)   # new: compound forms
    with pytest.raises(ConfigError, match="bad duration"):
        token_lifetime("forever")
    with pytest.raises(ConfigError, match="longer than zero"):
        token_lifetime("0h")


def test_audit_ages_use_it() -> None:
    now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_when("7d", now=now, option="--since") == now - timedelta(days=7)
    assert parse_when("1d12h", now=now, option="--since") == now - timedelta(hours=36)
    assert parse_when("2026-01-01", now=now, option="--since") == datetime(2026, 1, 1, tzinfo=UTC)


def test_schedules_use_it() -> None:
    assert parse_schedule("every 1h30m").describe() == "every 90m"
    assert parse_schedule("1d12h").describe() == "every 36h"
    assert parse_schedule("every 1d", jitter="1h30m").jitter == timedelta(minutes=90)
    with pytest.raises(ConfigError, match="bad jitter"):
        parse_schedule("every 1d", jitter="soon")
