"""Scheduled rotation: schedule specs, maintenance windows, a due-time queue, and the `Scheduler` loop.

    schedules.py  parse / validate specs (interval, cron, Quartz, Keeper JSON) and compute slots
    window.py     maintenance windows ("Mon-Fri 22:00-02:00") in the schedule's time zone
    queue.py      due-time priority queue (heapq, one entry per record)
    clock.py      injected clock: `SystemClock`, `FakeClock` (tests move time, nothing sleeps)
    state.py      durable per-record schedule state (table `kt_schedule_state`)
    service.py    `Scheduler`: dispatch, back-off, needs-attention, concurrency limits, restart safety
"""

from __future__ import annotations

from keyturn.scheduler.clock import Clock, FakeClock, SystemClock
from keyturn.scheduler.schedules import Schedule, parse_schedule
from keyturn.scheduler.service import Scheduler

__all__ = ["Clock", "FakeClock", "Schedule", "Scheduler", "SystemClock", "parse_schedule"]
