"""The one duration syntax of keyturn: `30d`, `12h`, `1h30m`, `90s`, `2w`, `1d 12h`.

A duration is one or more NUMBER UNIT pairs (units `s`, `m`, `h`, `d`, `w`, either case, spaces
allowed between and inside pairs) that add up; at most `MAX_DURATION` (ten years: longer is a typo
and would overflow date arithmetic). Every place that takes a duration parses it here: schedule
intervals and jitter (`keyturn schedule set --every 30d --jitter 30m`), token lifetimes
(`keyturn token create --expires 90d`) and ages (`keyturn audit export --since 7d`).

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> format_duration(parse_duration("14d"))
    '2w'

Errors are `ConfigError` naming what was parsed (`what`) and the accepted form; the offending text
is quoted shortened to 40 characters.
"""

from __future__ import annotations

import re
from datetime import timedelta

from keyturn.errors import ConfigError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION = timedelta(days=3650)
_PAIR = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_WHOLE = re.compile(r"\s*(?:\d+\s*[smhdw]\s*)+", re.IGNORECASE)
_FORM = "a number with a unit s/m/h/d/w, e.g. 30d or 1h30m"


def looks_like_duration(text: str) -> bool:
    """True if `text` has the shape of a duration (whatever its size): `30d`, `1h 30m`."""
    return _WHOLE.fullmatch(text) is not None


def parse_duration(text: str, *, what: str = "duration", positive: bool = False,
                   maximum: timedelta = MAX_DURATION) -> timedelta:
    """`text` as a timedelta; `positive` refuses zero. `ConfigError` for anything else."""
    raw = str(text).strip()
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    if not raw:
        raise ConfigError(f"empty {what}: use {_FORM}")
    if not looks_like_duration(raw):
        raise ConfigError(f"bad {what} {shown!r}: use {_FORM}")
    limit = int(maximum.total_seconds())
    total = 0
    for m in _PAIR.finditer(raw):
        digits = m.group(1).lstrip("0") or "0"
        if len(digits) > 12:  # before int(): Python refuses to convert very long digit strings at all
            total = limit + 1
            break
        total += int(digits) * UNITS[m.group(2).lower()]
    if total > limit:
        raise ConfigError(f"{what} {shown!r} is longer than the maximum of {format_duration(maximum)}"
                          + (" (10 years)" if maximum == MAX_DURATION else ""))
    if positive and total == 0:
        raise ConfigError(f"{what} {shown!r} must be longer than zero: use {_FORM}")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """`parse_duration` text for `delta` in the largest unit that fits exactly (`30d`, `2w`, `90m`)."""
    secs = int(delta.total_seconds())
    unit = next(u for u in ("w", "d", "h", "m", "s") if secs % UNITS[u] == 0)
    return f"{secs // UNITS[unit]}{unit}"


__all__ = ["MAX_DURATION", "UNITS", "format_duration", "looks_like_duration", "parse_duration"]
