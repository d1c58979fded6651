"""Rate budgets: a token bucket, and per-organisation buckets shared by every rotation in the process.

Meraki allows 10 requests/s per organisation with a burst of 10 (30 requests in 2 s from idle), shared
with every other application on that organisation; over it answers 429 + `Retry-After`. keyturn spends
the budget *proactively* so steady state produces no 429 at all: `OrgBudgets` keeps one `TokenBucket`
per organisation at `headroom` (default 90 %, i.e. 9/s and a burst of 9) of the documented limit, and
a 429 seen by any rotation pauses that organisation's bucket for everyone (`penalize`).

`Budgets` is what a Meraki target needs from a budget; `OrgBudgets` is the in-process one, and
`keyturn.engine.shared_limits.RedisOrgBudgets` the one shared by every worker process through Redis.

The clock and the sleep are injectable, so tests drive time by hand and never sleep.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Float refill arithmetic can leave 0.9999999 tokens; without this slack a waiter could spin on
# sleeps too small to move the clock.
_EPSILON = 1e-9


class Budgets(Protocol):
    """Per-organisation request budgets, shared by every rotation that holds the same object.

    `acquire(org)` waits until one request to `org` may be sent. `penalize(org, retry_after)` is
    called when the platform answered 429: every later `acquire(org)` — of every rotation, and for a
    shared implementation of every process — waits `retry_after` seconds first. It is synchronous so
    a target can call it where it sees the 429, but must be called from inside the running event loop
    (a shared implementation publishes the pause from a background task). `penalties()` counts the
    429s reported to this object (for `/metrics`).
    """

    async def acquire(self, org: str) -> None: ...

    def penalize(self, org: str, retry_after: float) -> None: ...

    def penalties(self) -> int: ...


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; `acquire()` waits for one token, FIFO.

    Starts full. `penalize(retry_after)` empties the bucket and pauses it for `retry_after` seconds
    (the server said so: every holder of this bucket waits, not only the caller that saw the 429).
    """

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("token bucket needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._paused_until = -math.inf
        self._lock = asyncio.Lock()
        self.waited = 0.0          # total seconds callers spent waiting (for benchmarks / metrics)
        self.penalties = 0

    def _refill(self) -> float:
        now = self._clock()
        start = max(self._stamp, self._paused_until)
        if now > start:
            self._tokens = min(self.burst, self._tokens + (now - start) * self.rate)
        self._stamp = max(self._stamp, now)
        return now

    @property
    def tokens(self) -> float:
        """Tokens available now (refilled to the current clock)."""
        self._refill()
        return self._tokens

    def try_acquire(self) -> bool:
        """Take a token if one is available now, without waiting."""
        now = self._refill()
        if now >= self._paused_until and self._tokens >= 1 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1)
            return True
        return False

    async def acquire(self) -> None:
        """Wait until a token is available and take it. Callers are served in arrival order."""
        async with self._lock:
            while True:
                now = self._refill()
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif self._tokens >= 1 - _EPSILON:
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                else:
                    wait = (1 - self._tokens) / self.rate
                self.waited += wait
                await self._sleep(wait)

    def penalize(self, retry_after: float) -> None:
        """The server answered 429: drain the bucket and hold everyone for `retry_after` seconds."""
        now = self._refill()
        self._tokens = 0.0
        self._paused_until = max(self._paused_until, now + max(0.0, retry_after))
        self.penalties += 1


class OrgBudgets:
    """One `TokenBucket` per organisation (by key), created on first use and shared process-wide.

    `rate`/`burst` are the platform's documented limits; `headroom` is the share keyturn may use (the
    rest is left to other applications on the same organisation).
    """

    def __init__(self, rate: float = 10.0, burst: int = 10, headroom: float = 0.9, *,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        self.rate = rate * headroom
        self.burst = max(1, math.floor(burst * headroom))
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, org: str) -> TokenBucket:
        found = self._buckets.get(org)
        if found is None:
            found = self._buckets[org] = TokenBucket(self.rate, self.burst, self._clock, self._sleep)
        return found

    async def acquire(self, org: str) -> None:
        await self.bucket(org).acquire()

    def penalize(self, org: str, retry_after: float) -> None:
        self.bucket(org).penalize(retry_after)

    def penalties(self) -> int:
        return sum(bucket.penalties for bucket in self._buckets.values())

    def orgs(self) -> list[str]:
        return sorted(self._buckets)
