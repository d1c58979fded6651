"""Schedule specs: parse and validate them, and compute when a record is due.

A record's schedule lives in its meta under ``"schedule"`` (see `Schedule.to_meta`)::

    {"spec": "0 2 * * *" | "0 0 2 ? * MON-FRI" | "every 30d" | {Keeper JSON},
     "tz": "Europe/Berlin", "window": "Sat 01:00-05:00" | null, "jitter": "10m" | null,
     "anchor": "2026-01-05T00:00:00+00:00" | null}

Spec forms (`parse_schedule`):

* **interval** ``every 30d`` (or just ``30d``; units s/m/h/d/w): elapsed time on a fixed grid
  ``anchor + k * every`` (anchor = when the schedule was set), so restarts never shift it. Intervals
  are real elapsed time; for a wall-clock time of day use cron or Keeper DAILY.
* **cron** 5 fields (``min hour dom month dow``; croniter syntax, ``@daily`` etc.), wall-clock in `tz`.
* **Quartz** 6-7 fields, seconds first, optional year, as Keeper uses (``0 0 2 ? * MON-FRI *``).
  Supported: ``?``; ``L`` and ``nW`` in day-of-month; ``nL`` (last weekday n of the month) and
  ``n#k`` (k-th weekday n) in day-of-week; day-of-week numbers 1-7 = SUN-SAT (Quartz), names.
  Refused with a reason: ``LW``, ``L-n``, and ``?`` in both or neither day field.
* **Keeper JSON** ``{"type": DAILY|WEEKLY|MONTHLY_BY_DAY|MONTHLY_BY_WEEKDAY|YEARLY, "intervalCount",
  "utcTime": "HH:MM" | "time": "HH:MM[:SS]" + "tz", "weekday", "day"/"monthDay", "occurrence"
  (FIRST..FOURTH, LAST), "month"}``; every `intervalCount` days/weeks/months/years counted from the
  anchor. A day of month past the month's end means its last day (31 → 30 Apr, 28/29 Feb).

Wall-clock schedules follow `keyturn.scheduler.tz.to_utc` on DST days: a time in the spring-forward gap
runs once, shifted by the gap; an ambiguous fall-back time runs once, at its first occurrence.

Due time (`Schedule.due`): slot + jitter, where jitter is a fixed fraction of the jitter span derived
from the record uid (sha256), so restarts never reshuffle. With a window, a due time outside it moves
to the next opening (plus the same fraction of min(jitter, opening length)) and is marked *deferred*:
a deferred rotation absorbs every slot up to the end of the opening it ran in.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol

from croniter import croniter
from croniter.croniter import CroniterError

from keyturn.durations import MAX_DURATION, format_duration, looks_like_duration, parse_duration
from keyturn.errors import ConfigError
from keyturn.scheduler.tz import to_utc, to_wall, zone
from keyturn.scheduler.window import Window, day_index, parse_window

META_KEY = "schedule"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SCAN_LIMIT = 5000           # candidate wall times looked at for one next slot
_DST_MARGIN = timedelta(hours=3)  # larger than any UTC-offset change
KEEPER_TYPES = ("DAILY", "WEEKLY", "MONTHLY_BY_DAY", "MONTHLY_BY_WEEKDAY", "YEARLY")
OCCURRENCES = ("FIRST", "SECOND", "THIRD", "FOURTH", "LAST")
CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron / croniter numbering
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
NO_FUTURE_RUN = "the schedule has no future run time (none before the year 9999)"


class _WallRule(Protocol):
    def walls(self, start: datetime) -> Iterator[datetime]:
        """Naive wall-clock times after `start`, ascending (may be infinite)."""
        ...


# --- rules -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntervalRule:
    every: timedelta
    anchor: datetime

    def next_after(self, t: datetime) -> datetime:
        k = (t - self.anchor) // self.every + 1
        return self.anchor + k * self.every


@dataclass(frozen=True, slots=True)
class CronRule:
    expr: str              # croniter syntax (Quartz already translated)
    seconds: bool          # seconds-first field order (Quartz)

    def walls(self, start: datetime) -> Iterator[datetime]:
        it = _croniter(self.expr, self.seconds)
        it.set_current(start, force=True)
        while True:
            try:
                yield it.get_next(datetime)
            except (CroniterError, ValueError, OverflowError):
                return


_CRON_CACHE = threading.local()


def _croniter(expr: str, seconds: bool) -> croniter:
    # Parsing an expression costs more than finding its next time; keep one parsed iterator per
    # expression and thread (iterators are stateful, so never share them across threads).
    cache: dict[tuple[str, bool], croniter] = _CRON_CACHE.__dict__.setdefault("iters", {})
    it = cache.get((expr, seconds))
    if it is None:
        if len(cache) > 4096:
            cache.clear()
        it = cache[(expr, seconds)] = croniter(expr, datetime(2000, 1, 1), second_at_beginning=seconds)
    return it


@dataclass(frozen=True, slots=True)
class KeeperRule:
    type: str
    count: int
    at: time
    weekdays: frozenset[int]
    day: int
    occurrence: int        # 0..3, or 4 = LAST
    month: int
    anchor: date

    def walls(self, start: datetime) -> Iterator[datetime]:
        d = start.date()
        n = self.count
        if self.type == "DAILY":
            d += timedelta(days=(-(d - self.anchor).days) % n)
            while d <= date.max - timedelta(days=n):
                yield datetime.combine(d, self.at)
                d += timedelta(days=n)
        elif self.type == "WEEKLY":
            week0 = self.anchor - timedelta(days=self.anchor.weekday())
            while d < date.max - timedelta(days=7):
                if ((d - week0).days // 7) % n == 0 and d.weekday() in self.weekdays:
                    yield datetime.combine(d, self.at)
                d += timedelta(days=1)
        elif self.type in ("MONTHLY_BY_DAY", "MONTHLY_BY_WEEKDAY"):
            base = self.anchor.year * 12 + self.anchor.month - 1
            for mi in range(d.year * 12 + d.month - 1, 9998 * 12):
                if (mi - base) % n == 0:
                    y, m = divmod(mi, 12)
                    yield datetime.combine(self._day_in(y, m + 1), self.at)
        else:  # YEARLY
            for y in range(d.year, 9999):
                if (y - self.anchor.year) % n == 0:
                    last = calendar.monthrange(y, self.month)[1]
                    yield datetime.combine(date(y, self.month, min(self.day, last)), self.at)

    def _day_in(self, y: int, m: int) -> date:
        last = calendar.monthrange(y, m)[1]
        if self.type == "MONTHLY_BY_DAY":
            return date(y, m, min(self.day, last))
        wd = next(iter(self.weekdays))
        if self.occurrence == 4:
            d = date(y, m, last)
            return d - timedelta(days=(d.weekday() - wd) % 7)
        first = date(y, m, 1)
        return first + timedelta(days=(wd - first.weekday()) % 7 + 7 * self.occurrence)


# --- the schedule ----------------------------------------------------------------------------------


def jitter_fraction(uid: str) -> float:
    """A fixed number in [0, 1) per record uid (restarts and other processes agree)."""
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated schedule. `next_slot` and `due` are pure functions of their arguments."""

    kind: str                          # interval | cron | quartz | keeper
    spec: str | Mapping[str, Any]
    tz_name: str
    tz: tzinfo
    rule: IntervalRule | CronRule | KeeperRule
    rule_tz: tzinfo                    # Keeper utcTime: UTC even when the window's zone is not
    window: Window | None
    jitter: timedelta
    anchor: datetime | None

    def to_meta(self) -> dict[str, Any]:
        return {
            "spec": dict(self.spec) if isinstance(self.spec, Mapping) else self.spec,
            "tz": self.tz_name,
            "window": self.window.text if self.window else None,
            "jitter": format_duration(self.jitter) if self.jitter else None,
            "anchor": self.anchor.isoformat() if self.anchor else None,
        }

    @property
    def fingerprint(self) -> str:
        """Changes whenever the schedule does (the scheduler then recomputes the next slot)."""
        return hashlib.sha256(json.dumps(self.to_meta(), sort_keys=True).encode()).hexdigest()[:32]

    def describe(self) -> str:
        spec = json.dumps(self.spec, sort_keys=True) if isinstance(self.spec, Mapping) else self.spec
        parts = [f"every {format_duration(self.rule.every)}" if isinstance(self.rule, IntervalRule) else spec]
        if self.kind != "interval" or self.window:
            parts.append(self.tz_name)
        if self.window:
            parts.append(f"window {self.window.text}")
        if self.jitter:
            parts.append(f"jitter {format_duration(self.jitter)}")
        return " · ".join(parts)

    def next_slot(self, after: datetime) -> datetime:
        """The first schedule slot strictly after `after` (aware UTC in, aware UTC out); `ConfigError`
        when there is none before the end of the calendar (year 9999)."""
        try:
            if isinstance(self.rule, IntervalRule):
                return self.rule.next_after(after)
            return _next_wall_slot(self.rule, self.rule_tz, after)
        except OverflowError as exc:
            raise ConfigError(NO_FUTURE_RUN) from exc

    def due(self, slot: datetime, uid: str) -> tuple[datetime, bool]:
        """(when the record's rotation may start for `slot`, whether a window deferred it)."""
        frac = jitter_fraction(uid)
        try:
            t = slot + _whole_seconds(self.jitter * frac)
            if self.window is None or self.window.contains(t):
                return t, False
            start, end = self.window.next_opening(t)
            return start + _whole_seconds(min(self.jitter, end - start) * frac), True
        except OverflowError as exc:
            raise ConfigError(NO_FUTURE_RUN) from exc

    def period(self, start: datetime) -> timedelta:
        """The interval, or for calendar schedules the gap between the first two slots after `start`."""
        if isinstance(self.rule, IntervalRule):
            return self.rule.every
        first = self.next_slot(start)
        return self.next_slot(first) - first

    def earliest(self, t: datetime) -> datetime:
        """`t`, or the next window opening when `t` is outside the window (retries, late starts)."""
        return t if self.window is None else self.window.earliest(t)

    def absorb_until(self, started: datetime) -> datetime:
        """A deferred rotation that started at `started` covers slots up to the end of its opening."""
        opening = self.window.opening_at(started) if self.window else None
        return opening[1] if opening else started


def _whole_seconds(delta: timedelta) -> timedelta:
    return timedelta(seconds=int(delta.total_seconds()))


def _next_wall_slot(rule: _WallRule, tz: tzinfo, after: datetime) -> datetime:
    # Walk wall times from a little before `after`: on DST days wall → UTC is not monotonic (a gap time
    # maps past later times), so keep the smallest UTC time > after among walls close to the first hit.
    if tz is UTC:  # no DST: the first wall time after `after` is the answer
        start = to_wall(after, tz)
        for wall in rule.walls(start):
            if (t := to_utc(wall, tz)) > after:
                return t
        raise ConfigError(NO_FUTURE_RUN)
    best: datetime | None = None
    best_wall: datetime | None = None
    for i, wall in enumerate(rule.walls(to_wall(after, tz) - _DST_MARGIN)):
        if best_wall is not None and wall > best_wall + _DST_MARGIN:
            break
        if i >= _SCAN_LIMIT:
            break
        t = to_utc(wall, tz)
        if t > after and (best is None or t < best):
            best, best_wall = t, wall
    if best is None:
        raise ConfigError(NO_FUTURE_RUN)
    return best


# --- parsing ---------------------------------------------------------------------------------------


def parse_schedule(
    spec: str | Mapping[str, Any], *, tz: str | None = None, window: str | None = None,
    jitter: str | timedelta | None = None, anchor: datetime | str | None = None,
) -> Schedule:
    """Validate a schedule; `ConfigError` saying why when it is invalid (bad cron, unsupported Quartz
    feature, unknown zone, bad window, bad jitter, a schedule that never fires).

    `anchor` is the start of interval grids and Keeper `intervalCount` counting (default: the Unix
    epoch); `keyturn schedule set` stores the time the schedule was set.
    """
    when = _anchor(anchor)
    keeper: Mapping[str, Any] | None = None
    if isinstance(spec, Mapping):
        keeper = spec
    elif isinstance(spec, str) and spec.strip().startswith("{"):
        try:
            loaded = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"schedule JSON is malformed: {exc.msg} at column {exc.colno}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError("a Keeper schedule must be a JSON object")
        keeper = loaded
    elif not isinstance(spec, str) or not spec.strip():
        raise ConfigError("empty schedule: use a cron expression, 'every 30d', or a Keeper JSON object")
    said = keeper.get("tz") if keeper is not None else None
    # An empty "tz" in the JSON says nothing (the zone then comes from --tz or defaults to UTC), so it
    # cannot contradict --tz — nor the zone stored with the schedule when it is read back.
    if isinstance(said, str) and said.strip() and tz and said.strip() != tz.strip():
        raise ConfigError(f"the schedule JSON says tz {said!r} but --tz says {tz!r}")
    tz_name = (tz or (str(keeper.get("tz")) if keeper is not None and keeper.get("tz") else None)
               or "UTC").strip()
    zone_ = zone(tz_name)
    rule: IntervalRule | CronRule | KeeperRule
    rule_tz = zone_
    stored: str | dict[str, Any]
    if keeper is not None:
        rule, rule_tz = _keeper(keeper, zone_, when)
        kind, stored = "keeper", dict(keeper)
    else:
        text = " ".join(str(spec).split())
        kind, rule = _text_rule(text, when)
        stored = text
    span = parse_duration(jitter, what="jitter") if isinstance(jitter, str) else (jitter or timedelta())
    if span < timedelta():
        raise ConfigError("jitter must not be negative")
    if span > MAX_DURATION:
        raise ConfigError(f"jitter is longer than the maximum of {format_duration(MAX_DURATION)}")
    win = parse_window(window, zone_) if window else None
    sched = Schedule(kind=kind, spec=stored, tz_name=tz_name, tz=zone_, rule=rule, rule_tz=rule_tz,
                     window=win, jitter=span, anchor=when)
    start = when or datetime.now(UTC)
    sched.due(sched.next_slot(start), "")  # refuse schedules that never fire (e.g. 31 Feb)
    if span:
        # A jitter as long as the interval would push a rotation past the next slot: every run late, and
        # slots silently merged. The period is measured from the anchor, so a stored schedule that was
        # accepted stays accepted.
        period = sched.period(start)
        if span >= period:
            raise ConfigError(f"jitter {format_duration(span)} must be shorter than the schedule's interval "
                              f"({_describe_delta(period)}); use a smaller --jitter")
    return sched


def _describe_delta(delta: timedelta) -> str:
    secs = int(delta.total_seconds())
    return format_duration(delta) if secs > 0 else "under a second"


def from_meta(data: Any) -> Schedule:
    """The schedule stored in a record's meta (`Schedule.to_meta`); `ConfigError` if it is invalid."""
    if not isinstance(data, Mapping) or "spec" not in data:
        raise ConfigError("the stored schedule is malformed; set it again with `keyturn schedule set`")
    return parse_schedule(data["spec"], tz=data.get("tz"), window=data.get("window"),
                          jitter=data.get("jitter"), anchor=data.get("anchor"))


class ScheduleMemo:
    """Stored schedules parsed once per distinct stored value during one listing (a fleet shares a
    handful), each with its first slot after `now`. Parsing a cron is most of a listing's cost."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._cache: dict[Any, tuple[Schedule, datetime] | ConfigError] = {}

    def get(self, raw: Any) -> tuple[Schedule, datetime] | ConfigError:
        """(the schedule, its next slot after `now`), or the `ConfigError` `from_meta` gave."""
        key = _hashable(raw)
        if key not in self._cache:
            try:
                sched = from_meta(raw)
                self._cache[key] = (sched, sched.next_slot(self.now))
            except ConfigError as exc:
                self._cache[key] = exc
        return self._cache[key]

    def parse(self, raw: Any) -> Schedule:
        """`from_meta(raw)`, remembered."""
        got = self.get(raw)
        if isinstance(got, ConfigError):
            raise got.with_traceback(None)
        return got[0]


def _hashable(raw: Any) -> Any:
    """A cache key for a stored schedule: its items when they hash (stored metadata is canonical JSON,
    keys sorted), else its JSON text."""
    try:
        key = tuple(raw.items()) if isinstance(raw, Mapping) else raw
        hash(key)
    except TypeError:
        return json.dumps(raw, sort_keys=True, default=str)
    return key


def _anchor(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"bad schedule anchor {value!r}: use an ISO 8601 time") from exc
    if value.tzinfo is None:
        raise ConfigError("the schedule anchor needs a UTC offset")
    return value.astimezone(UTC)


def _text_rule(text: str, anchor: datetime | None) -> tuple[str, IntervalRule | CronRule]:
    low = text.lower()
    if low.startswith("every ") or looks_like_duration(low):
        every = parse_duration(text[6:] if low.startswith("every ") else text, what="interval")
        if every < timedelta(minutes=1):
            raise ConfigError(f"interval {text!r} is shorter than the minimum of 1 minute")
        return "interval", IntervalRule(every=every, anchor=anchor or EPOCH)
    fields = text.split(" ")
    if low.startswith("@") or len(fields) == 5:
        _check_cron(text, seconds=False)
        return "cron", CronRule(expr=text, seconds=False)
    if len(fields) in (6, 7):
        expr = quartz_to_croniter(text)
        _check_cron(expr, seconds=True, shown=text)
        return "quartz", CronRule(expr=expr, seconds=True)
    raise ConfigError(f"schedule {text!r} is neither cron (5 fields), Quartz (6-7 fields, seconds first), "
                      "an interval like 'every 30d', nor a Keeper JSON object")


def _check_cron(expr: str, *, seconds: bool, shown: str | None = None) -> None:
    try:
        croniter(expr, datetime(2000, 1, 1), second_at_beginning=seconds)
    except (CroniterError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"invalid cron expression {shown or expr!r}: {reason}") from exc


_QUARTZ_DOW = re.compile(r"^(?P<a>\w+)(?:-(?P<b>\w+))?(?:/(?P<step>\d+))?$")


def quartz_to_croniter(text: str) -> str:
    """Translate Quartz (sec min hour dom month dow [year]) into croniter's seconds-first form."""
    f = text.split(" ")
    sec, minute, hour, dom, month, dow = f[:6]
    year = f[6] if len(f) == 7 else None
    if dom == "?" and dow == "?":
        raise ConfigError(f"Quartz {text!r}: '?' may stand in only one of day-of-month and day-of-week")
    if dom != "?" and dow != "?":
        raise ConfigError(f"Quartz {text!r}: one of day-of-month and day-of-week must be '?'")
    up = dom.upper()
    if "LW" in up or re.search(r"L-\d", up):
        raise ConfigError(f"Quartz {text!r}: 'LW' and 'L-n' in day-of-month are not supported; "
                          "supported are L, nW, nL, n#k")
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else ",".join(_quartz_dow(part, text) for part in dow.split(","))
    return " ".join([sec, minute, hour, dom, month, dow] + ([year] if year and year != "*" else []))


def _quartz_dow_num(tok: str, text: str) -> str:
    if tok.isdigit():
        n = int(tok)
        if not 1 <= n <= 7:
            raise ConfigError(f"Quartz {text!r}: day-of-week numbers are 1-7 (1 = Sunday)")
        return str(n - 1)
    return tok


def _quartz_dow(part: str, text: str) -> str:
    if part == "*":
        return part
    up = part.upper()
    if up == "L":                                 # alone in day-of-week, Quartz L means Saturday
        return "6"
    if up.endswith("L"):                          # nL: last weekday n of the month
        base = _quartz_dow_num(up[:-1], text)
        if not base.isdigit():
            if base.lower() not in CRON_DAYS:
                raise ConfigError(f"Quartz {text!r}: cannot read day-of-week {part!r}")
            base = str(CRON_DAYS.index(base.lower()))
        return f"L{base}"
    if "#" in up:
        base, _, k = up.partition("#")
        return f"{_quartz_dow_num(base, text)}#{k}"
    if up.startswith("*/"):
        return up
    m = _QUARTZ_DOW.match(up)
    if m is None:
        raise ConfigError(f"Quartz {text!r}: cannot read day-of-week {part!r}")
    out = _quartz_dow_num(m["a"], text)
    if m["b"]:
        out += "-" + _quartz_dow_num(m["b"], text)
    if m["step"]:
        out += "/" + m["step"]
    return out


def _keeper(obj: Mapping[str, Any], zone_: tzinfo, anchor: datetime | None) -> tuple[KeeperRule, tzinfo]:
    kind = str(obj.get("type", "")).upper()
    if kind not in KEEPER_TYPES:
        raise ConfigError(f"Keeper schedule type {obj.get('type')!r} is not one of {', '.join(KEEPER_TYPES)}")
    try:
        count = int(obj.get("intervalCount", 1))
    except (TypeError, ValueError) as exc:
        raise ConfigError("Keeper schedule intervalCount must be a whole number >= 1") from exc
    if count < 1:
        raise ConfigError("Keeper schedule intervalCount must be a whole number >= 1")
    rule_tz = zone_
    if "utcTime" in obj:
        at, rule_tz = _hhmm(obj["utcTime"], "utcTime"), UTC
    elif "time" in obj:
        at = _hhmm(obj["time"], "time")
    else:
        raise ConfigError("Keeper schedule needs 'utcTime' (HH:MM) or 'time' (HH:MM:SS) with 'tz'")
    weekdays: frozenset[int] = frozenset()
    if kind in ("WEEKLY", "MONTHLY_BY_WEEKDAY"):
        raw = obj.get("weekday")
        names = raw if isinstance(raw, list) else [raw]
        if raw is None or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"Keeper {kind} schedule needs 'weekday' (e.g. MONDAY)")
        weekdays = frozenset(day_index(str(n)) for n in names)
        if kind == "MONTHLY_BY_WEEKDAY" and len(weekdays) != 1:
            raise ConfigError("Keeper MONTHLY_BY_WEEKDAY takes exactly one weekday")
    occurrence = 0
    if kind == "MONTHLY_BY_WEEKDAY":
        occ = str(obj.get("occurrence", "")).upper()
        if occ not in OCCURRENCES:
            raise ConfigError(f"Keeper occurrence {obj.get('occurrence')!r} is not one of "
                              f"{', '.join(OCCURRENCES)}")
        occurrence = OCCURRENCES.index(occ)
    day = 0
    if kind in ("MONTHLY_BY_DAY", "YEARLY"):
        raw_day = obj.get("monthDay", obj.get("day"))
        if isinstance(raw_day, bool) or not isinstance(raw_day, int | str) or not str(raw_day).isdigit() \
                or not 1 <= int(raw_day) <= 31:
            raise ConfigError(f"Keeper {kind} schedule needs 'monthDay' (or 'day') between 1 and 31")
        day = int(raw_day)
    month = 0
    if kind == "YEARLY":
        month = _month(obj.get("month"))
        if day > calendar.monthrange(2000, month)[1]:
            raise ConfigError(f"Keeper YEARLY schedule: month {month} has no day {day}")
    base = anchor.astimezone(rule_tz).date() if anchor else EPOCH.date()
    return KeeperRule(type=kind, count=count, at=at, weekdays=weekdays, day=day, occurrence=occurrence,
                      month=month, anchor=base), rule_tz


def _hhmm(value: Any, what: str) -> time:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", str(value).strip())
    if m is None or int(m[1]) > 23 or int(m[2]) > 59 or int(m[3] or 0) > 59:
        raise ConfigError(f"Keeper schedule {what} {value!r} is not a time HH:MM or HH:MM:SS")
    return time(int(m[1]), int(m[2]), int(m[3] or 0))


def _month(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 12:
        return value
    text = str(value or "").strip().lower()
    if text.isdigit() and 1 <= int(text) <= 12:
        return int(text)
    full = [calendar.month_name[i].lower() for i in range(1, 13)]
    if text in MONTHS:
        return MONTHS.index(text) + 1
    if text in full:
        return full.index(text) + 1
    raise ConfigError(f"Keeper YEARLY schedule needs 'month' (JANUARY..DECEMBER or 1-12), got {value!r}")
