"""Time-zone helpers shared by schedules and windows: IANA names, wall time → UTC. (Durations:
`keyturn.durations`, re-exported here for older callers.)"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from keyturn.durations import MAX_DURATION, format_duration, parse_duration
from keyturn.errors import ConfigError


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


__all__ = ["MAX_DURATION", "format_duration", "parse_duration", "to_utc", "to_wall", "zone"]
