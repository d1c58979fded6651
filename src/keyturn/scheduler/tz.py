"""Time-zone helpers shared by schedules and windows: IANA names, wall time → UTC, durations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from keyturn.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
# Longest duration accepted (intervals, jitter): ten years. Longer is a typo, and would overflow date
# arithmetic (`every 99999999d` is past the year 9999).
MAX_DURATION = timedelta(days=3650)


def zone(name: str) -> tzinfo:
    """An IANA time zone (`Europe/Berlin`, `UTC`); `ConfigError` naming the bad value otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("time zone must be an IANA name such as Europe/Berlin or UTC")
    if name.strip().upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin") from exc


def to_utc(wall: datetime, tz: tzinfo) -> datetime:
    """Naive wall-clock time in `tz` → aware UTC.

    DST rule (why: a daily 02:30 job must run exactly once on both transition days): an ambiguous time
    (fall back) means its first occurrence; a time in the spring-forward gap is moved forward by the
    gap (02:30 → 03:30), which is what zoneinfo gives for ``fold=0``.
    """
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def to_wall(t: datetime, tz: tzinfo) -> datetime:
    """Aware time → naive wall-clock time in `tz`."""
    return t.astimezone(tz).replace(tzinfo=None)


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """`30d`, `12h`, `1h30m`, `90s`, `2w` → timedelta (units s/m/h/d/w), at most `MAX_DURATION`;
    `ConfigError` otherwise."""
    raw = str(text).strip()
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    if not raw:
        raise ConfigError(f"empty {what}: use a number with a unit s/m/h/d/w, e.g. 30d")
    pos, total = 0, 0
    limit = int(MAX_DURATION.total_seconds())
    for m in _DURATION.finditer(raw):
        if raw[pos:m.start()].strip():
            break
        digits = m.group(1).lstrip("0") or "0"
        if len(digits) > 12:  # before int(): Python refuses to convert very long digit strings at all
            total = limit + 1
        else:
            total += int(digits) * _UNITS[m.group(2).lower()]
        pos = m.end()
    if pos == 0 or raw[pos:].strip():
        raise ConfigError(f"bad {what} {shown!r}: use a number with a unit s/m/h/d/w, e.g. 30d or 1h30m")
    if total > limit:
        raise ConfigError(f"{what} {shown!r} is longer than the maximum of {format_duration(MAX_DURATION)} "
                          "(10 years)")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """`parse_duration` text for `delta` in the largest unit that fits exactly (`30d`, `2w`, `90m`)."""
    secs = int(delta.total_seconds())
    unit = next(u for u in ("w", "d", "h", "m", "s") if secs % _UNITS[u] == 0)
    return f"{secs // _UNITS[unit]}{unit}"
