"""Rate budgets: one request per organisation every `interval` seconds, shared by every rotation.

Meraki allows 10 requests/s per organisation with a burst of 10 (30 requests in 2 s from idle), shared
with every other application on that organisation; over it answers 429 + `Retry-After`. keyturn spends
only its share (`KEYTURN_MERAKI_API_SHARE`, default 90 %: `limit` = 9 requests per second) and must
never exceed it in *any* 1-second window as counted where the requests arrive, so steady state
produces no 429 at all.

Counting grants in a 1-s window (a moving window or a token bucket) is not enough: a request reaches
the device some milliseconds after its grant, and that delay varies (the event loop is busy, the
connection pool, the other end's read), so `limit` grants packed at the end of one window and `limit`
at the start of the next arrive `limit` + 1 in one window. `Pacing` therefore does two things:

* paces grants (GCRA, a leaky bucket: slots `interval` apart, at most `tolerance` of catch-up after
  the callers fell behind) with ``interval = (1 + jitter) / limit``, so that in steady state any
  `limit` + 1 consecutive requests span 1 + `jitter` s and a delay varying by up to `jitter` cannot
  put `limit` + 1 in a window (`pacing_holds`);
* keeps the receiver's rule itself: a slot is never within `window` (1 s + `WIRE_MARGIN`) after the
  `limit`-th latest *send*, where a send is stamped when its caller actually woke up, and again when
  its first byte went out (`OnWire`, from the HTTP client's trace: a new connection's handshake
  counts) — so a late request pushes back the one `limit` sends later instead of meeting it in one
  window.

What the stamps cannot see (the kernel and the receiver's own reading) must vary by less than
`WIRE_MARGIN`. The cost is `jitter` of each second in steady state: with the
default 0.04 s the rate is 96 % of the share. `tests/unit/test_ratelimit_pacing.py` drives both with
a fake clock.

A 429 seen by any rotation pauses that organisation for everyone (`penalize`).

`Budgets` is what a Meraki target needs from a budget; `OrgBudgets` is the in-process one, and
`keyturn.engine.shared_budgets.RedisOrgBudgets` the one shared by every worker process through Redis
(the same `reserve` step, as a Lua script on Redis' clock). The clock and the sleep are injectable,
so tests drive time by hand and never sleep.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# The pacing's slack: how much later than its slot a request may arrive, in steady state, before
# the send log has to push anything back. Measured by `python -m bench --only scaleout` (Meraki, 2
# workers x 32 threads, 2 cores; bench/RESULTS.md): arrivals strayed from the pacing by 3-5 ms at p99
# and 4-7 ms at worst on an idle machine, 6-39 ms at p99 on a saturated one (whose worst, up to
# 140 ms, is mostly the simulator waiting for a core; late sends are what the send log absorbs).
SEND_JITTER = 0.04
# What the send log cannot see may vary by this much: wake-up to the wire (at least one more pass
# of a busy event loop inside the HTTP client), and the receiver's read.
WIRE_MARGIN = 0.03
# Catch-up after the callers fell behind (a stall elsewhere): none. Slots caught up come at once,
# and a burst of sends from one event loop leaves it late by more than WIRE_MARGIN (measured: a
# 0.5 s catch-up put 10 requests in a 1-s window at a share of 9); a stall's time is lost instead.
CATCH_UP = 0.0
# Float products such as 0.3 * 10 = 3.0000000000000004 must not lose a request to `floor`.
_EPSILON = 1e-9


OnWire = Callable[[], None]
"""Called by a target the moment a granted request's first byte goes out (after any connection set-up
and TLS handshake): the budget then counts the request from when it really left, not from its grant."""


class Budgets(Protocol):
    """Per-organisation request budgets, shared by every rotation that holds the same object.

    `acquire(org)` waits until one request to `org` may be sent; send it at once, and call the `OnWire`
    it returns (None: this budget does not need it) when the request is on the wire. `penalize(org,
    retry_after)` is called when the platform answered 429: every later `acquire(org)` — of every
    rotation, and for a shared implementation of every process — waits `retry_after` seconds first.
    It is synchronous so a target can call it where it sees the 429, but must be called from inside
    the running event loop (a shared implementation publishes the pause from a background task).
    `penalties()` counts the 429s reported to this object (for `/metrics`).
    """

    async def acquire(self, org: str) -> OnWire | None: ...

    def penalize(self, org: str, retry_after: float) -> None: ...

    def penalties(self) -> int: ...


def per_second(rate: float, burst: int, headroom: float) -> int:
    """Requests per second keyturn may send: floor(min(rate, burst) x headroom), at least 1."""
    if rate <= 0 or burst < 1:
        raise ValueError("a budget needs rate > 0 and burst >= 1")
    if not 0 < headroom <= 1:
        raise ValueError("headroom must be in (0, 1]")
    return max(1, math.floor(min(rate, burst) * headroom + _EPSILON))


def pacing_interval(limit: int, jitter: float = SEND_JITTER) -> float:
    """Seconds between two grants so that `limit` + 1 of them span 1 + `jitter` seconds."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1) seconds")
    return (1.0 + jitter) / limit


@dataclass(frozen=True)
class Pacing:
    """The slot arithmetic shared by `Pacer` (in process) and `RedisOrgBudgets`' Lua script."""

    limit: int
    interval: float
    tolerance: float = CATCH_UP
    window: float = 1.0 + WIRE_MARGIN

    @classmethod
    def for_limit(cls, limit: int, jitter: float = SEND_JITTER) -> Pacing:
        return cls(limit, pacing_interval(limit, jitter))

    def reserve(self, tat: float, now: float, sent: Sequence[float]) -> tuple[float, float]:
        """The slot for a request asked for at `now`, and the next theoretical arrival time. `tat` is
        the previous call's second value (or -inf); `sent` the latest send stamps (any order)."""
        slot = max(tat - self.tolerance, now)
        if len(sent) >= self.limit:
            slot = max(slot, sorted(sent)[-self.limit] + self.window)
        return slot, max(tat, slot) + self.interval


def pacing_holds(limit: int, interval: float, jitter: float) -> bool:
    """True when grants `interval` apart, each arriving after a delay that varies by at most `jitter`,
    put at most `limit` arrivals in every half-open 1-second window: arrivals i and i + limit come
    from grants limit x interval apart, so they are at least limit x interval - jitter apart."""
    return limit * interval - jitter >= 1.0 - _EPSILON


class Pacer:
    """One organisation's `Pacing` in this process, FIFO; `penalize(retry_after)` holds everyone.

    `acquire()` reserves the next slot and sleeps until it, holding the queue so callers are served
    in arrival order; the send is stamped when the caller actually woke. A 429 that comes in while a
    caller sleeps is honoured: it wakes, finds the pause, and waits it out before taking a fresh slot.
    """

    def __init__(self, pacing: Pacing, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.pacing = pacing
        self._clock = clock
        self._sleep = sleep
        self._tat = -math.inf
        self._sent: deque[list[float]] = deque(maxlen=pacing.limit)  # one-item cells, raised by OnWire
        self._paused_until = -math.inf
        self._lock = asyncio.Lock()
        self.waited = 0.0          # total seconds callers spent waiting (for benchmarks / metrics)
        self.penalties = 0

    async def acquire(self) -> OnWire:
        """Wait for this caller's slot (after any pause) and take it; call the result once sent."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    self.waited += self._paused_until - now
                    await self._sleep(self._paused_until - now)
                    continue
                slot, self._tat = self.pacing.reserve(self._tat, now, [c[0] for c in self._sent])
                if slot > now:
                    self.waited += slot - now
                    await self._sleep(slot - now)
                woke = self._clock()
                cell = [max(slot, woke)]
                self._sent.append(cell)  # given up or not, it may have been sent
                if woke < self._paused_until:
                    continue  # a 429 came in while we slept: the slot is given up
                return self._on_wire(cell)

    def _on_wire(self, cell: list[float]) -> OnWire:
        def sent() -> None:
            cell[0] = max(cell[0], self._clock())
        return sent

    def penalize(self, retry_after: float) -> None:
        """The server answered 429: hold everyone for `retry_after` seconds from now."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, retry_after))
        self.penalties += 1


class OrgBudgets:
    """One `Pacer` per organisation (by key), created on first use and shared process-wide.

    `rate`/`burst` are the platform's documented limits; `headroom` is the share keyturn may use (the
    rest is left to other applications on the same organisation); `limit` the resulting requests per
    second and `interval` the pacing (`pacing_interval`).
    """

    def __init__(self, rate: float = 10.0, burst: int = 10, headroom: float = 0.9, *,
                 jitter: float = SEND_JITTER, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.limit = per_second(rate, burst, headroom)
        self.pacing = Pacing.for_limit(self.limit, jitter)
        self.interval = self.pacing.interval
        self._clock = clock
        self._sleep = sleep
        self._pacers: dict[str, Pacer] = {}

    def pacer(self, org: str) -> Pacer:
        found = self._pacers.get(org)
        if found is None:
            found = self._pacers[org] = Pacer(self.pacing, self._clock, self._sleep)
        return found

    async def acquire(self, org: str) -> OnWire:
        return await self.pacer(org).acquire()

    def penalize(self, org: str, retry_after: float) -> None:
        self.pacer(org).penalize(retry_after)

    def penalties(self) -> int:
        return sum(pacer.penalties for pacer in self._pacers.values())

    def orgs(self) -> list[str]:
        return sorted(self._pacers)
