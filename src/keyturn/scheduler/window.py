"""Maintenance windows: when a scheduled rotation may *start*, in the schedule's time zone.

Syntax: one or more rules separated by ``;``, each ``[DAYS] HH:MM-HH:MM``::

    Sat 01:00-05:00                 Saturdays 01:00 to 05:00
    Mon-Fri 22:00-02:00             opens Mon..Fri at 22:00, closes 02:00 the next morning
    Sat,Sun 00:00-06:00; Wed 12:00-13:00
    02:00-04:00  (or "daily 02:00-04:00")   every day

DAYS are English day names or three-letter abbreviations, ranges (``Fri-Mon`` wraps) and comma lists.
The days name the day a window *opens*; an end at or before the start means the next day (equal
start and end: 24 hours). Times are wall-clock times in the schedule's zone (DST rule of
`keyturn.scheduler.tz.to_utc`). Intervals are half-open: ``[start, end)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from keyturn.errors import ConfigError
from keyturn.scheduler.tz import to_utc, to_wall

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_RULE = re.compile(r"^\s*(?:(?P<days>[A-Za-z*][A-Za-z,\-\s*]*?)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*"
                   r"(?P<end>\d{1,2}:\d{2})\s*$")


def day_index(name: str) -> int:
    """`Mon`/`monday`/`MON` → 0 … `Sun` → 6; `ConfigError` otherwise."""
    key = name.strip().lower()
    for i, (short, full) in enumerate(zip(DAY_NAMES, DAY_NAMES_FULL, strict=True)):
        if key in (short, full):
            return i
    raise ConfigError(f"unknown day {name!r}: use Mon, Tue, Wed, Thu, Fri, Sat or Sun")


def _days(text: str | None) -> frozenset[int]:
    if text is None or text.strip().lower() in ("", "*", "daily", "every day", "everyday"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ConfigError(f"empty day in {text!r}")
        if "-" in part:
            a, _, b = part.partition("-")
            i, j = day_index(a), day_index(b)
            out.update((i + k) % 7 for k in range(((j - i) % 7) + 1))
        else:
            out.add(day_index(part))
    return frozenset(out)


def _clock(text: str, what: str) -> time:
    h, _, m = text.partition(":")
    hour, minute = int(h), int(m)
    if hour == 24 and minute == 0:
        return time(0, 0)
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ConfigError(f"bad {what} time {text!r}: use HH:MM between 00:00 and 23:59")
    return time(hour, minute)


@dataclass(frozen=True, slots=True)
class WindowRule:
    days: frozenset[int]
    start: time
    end: time

    @property
    def length(self) -> timedelta:
        s = self.start.hour * 60 + self.start.minute
        e = self.end.hour * 60 + self.end.minute
        return timedelta(minutes=(e - s) % 1440 or 1440)


@dataclass(frozen=True, slots=True)
class Window:
    """A parsed maintenance window bound to a time zone. Build with `parse_window`."""

    text: str
    rules: tuple[WindowRule, ...]
    tz: tzinfo

    def openings(self, around: datetime, *, days_before: int = 2,
                 days_after: int = 9) -> list[tuple[datetime, datetime]]:
        """Every opening (start, end) in UTC whose start day lies near `around`, sorted by start."""
        base = to_wall(around, self.tz).date()
        out = []
        for k in range(-days_before, days_after + 1):
            day = base + timedelta(days=k)
            for rule in self.rules:
                if day.weekday() in rule.days:
                    wall_start = datetime.combine(day, rule.start)
                    start = to_utc(wall_start, self.tz)
                    end = to_utc(wall_start + rule.length, self.tz)
                    if end > start:  # a window wholly inside a DST gap does not open that day
                        out.append((start, end))
        out.sort()
        return out

    def opening_at(self, t: datetime) -> tuple[datetime, datetime] | None:
        """The opening containing `t` (the one ending last when openings overlap), or None."""
        hits = [(s, e) for s, e in self.openings(t, days_before=1, days_after=1) if s <= t < e]
        return max(hits, key=lambda se: se[1]) if hits else None

    def contains(self, t: datetime) -> bool:
        return self.opening_at(t) is not None

    def next_opening(self, t: datetime) -> tuple[datetime, datetime]:
        """The opening containing `t`, else the first one starting after `t`."""
        current = self.opening_at(t)
        if current is not None:
            return current
        # Nine days ahead holds every weekday at least once — unless the only opening that week falls in a
        # DST gap (Sun 02:00-03:00 in Europe/Berlin on the last Sunday of March): look one week further.
        later = [(s, e) for s, e in self.openings(t, days_after=16) if s > t]
        if not later:  # pragma: no cover - a DST gap never swallows the same weekday two weeks running
            raise ConfigError(f"maintenance window {self.text!r} never opens")
        return later[0]

    def earliest(self, t: datetime) -> datetime:
        """`t` if it is inside the window, else the next opening's start."""
        return t if self.contains(t) else self.next_opening(t)[0]


def parse_window(text: str, tz: tzinfo) -> Window:
    """Parse a window spec (module docstring); `ConfigError` saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("empty maintenance window: use e.g. 'Sat 01:00-05:00' or 'Mon-Fri 22:00-02:00'")
    rules = []
    for raw in text.split(";"):
        m = _RULE.match(raw)
        if m is None:
            raise ConfigError(f"bad maintenance window {raw.strip()!r}: use '[DAYS] HH:MM-HH:MM', "
                              "e.g. 'Sat 01:00-05:00' or 'Mon-Fri 22:00-02:00'")
        rules.append(WindowRule(days=_days(m.group("days")), start=_clock(m.group("start"), "start"),
                                end=_clock(m.group("end"), "end")))
    return Window(text=text.strip(), rules=tuple(rules), tz=tz)
