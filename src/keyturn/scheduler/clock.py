"""The scheduler's clock, injected so tests control time.

`Clock.now()` is wall-clock time (aware, UTC): schedules are defined in wall-clock terms, so a step of
the system clock (NTP, a VM resume) must be seen, not hidden behind a monotonic clock.
`Clock.sleep_until(t)` returns an awaitable that completes once `now() >= t`; the wait is registered
when `sleep_until` is *called* (so a test moving a `FakeClock` right after sees it); callers may
cancel it at any time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Protocol

#: `SystemClock` re-reads the wall clock at least this often while sleeping, so a clock step is
#: noticed within this many seconds instead of after a long monotonic sleep.
RECHECK_SECONDS = 30.0


class Clock(Protocol):
    def now(self) -> datetime:
        """Current wall-clock time, timezone-aware UTC."""
        ...

    def sleep_until(self, when: datetime) -> Awaitable[None]:
        """An awaitable done when `now() >= when` (at once if it already is). Cancellable."""
        ...


class SystemClock:
    """The real clock. Sleeps in slices of at most `RECHECK_SECONDS` to notice clock steps."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep_until(self, when: datetime) -> Awaitable[None]:
        return self._sleep(when)

    async def _sleep(self, when: datetime) -> None:
        # Slices, not one long sleep: asyncio sleeps on the monotonic clock, which a wall-clock step
        # does not move; re-reading `now()` notices the step.
        while (left := (when - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, RECHECK_SECONDS))


class FakeClock:
    """A clock tests move by hand. Sleepers wake exactly when `set`/`advance` reaches their time.

    Moving backwards (an NTP step back) is allowed; sleepers then keep waiting for their time.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def sleep_until(self, when: datetime) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if when <= self._now:
            fut.set_result(None)
        else:
            heapq.heappush(self._sleepers, (when, next(self._seq), fut))
        return fut

    def next_wakeup(self) -> datetime | None:
        """The earliest time a live sleeper waits for (None when nobody sleeps)."""
        while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def set(self, when: datetime) -> None:
        """Jump to `when` (forwards or backwards) and wake every sleeper whose time has come."""
        self._now = when.astimezone(UTC)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def advance(self, delta: timedelta | float) -> None:
        self.set(self._now + (delta if isinstance(delta, timedelta) else timedelta(seconds=delta)))
