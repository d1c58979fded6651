"""`RedisOrgBudgets`: the per-organisation Meraki `Budgets` (`keyturn.engine.ratelimit`) shared by every
keyturn process through Redis, for workers on several hosts.

One request per organisation every `interval` seconds summed over every process, where `interval` =
(1 + jitter) / `limit` and `limit` = floor(min(rate, burst) * headroom) — 9 requests/s at the default
90 % of Meraki's 10/s, paced 0.116 s apart — and never within 1 s + margin after the `limit`-th latest
send (`ratelimit.Pacing`: GCRA plus a log of sends). A short Lua script does it on Redis' clock: it
reads the pause, then reserves the next slot (at most `HORIZON` ahead) and returns how long to wait
for it; the caller sleeps until the slot and sends at once, and a request that left late — its event
loop woke it late, or its connection took a while (`OnWire`) — raises its log entry by the delay
(from a background task).

Why a script and not a library: `limits` and `pyrate-limiter` count grants in a window (a moving
window, a sliding log) stamped when granted, which lets `limit` grants bunch at a window's edge — and
a request reaches Meraki milliseconds after its grant, by a delay that varies, so counted at Meraki a
window then holds `limit` + 1 or more (measured: 10-11 in a 1-s window at a share of 9); neither
paces, nor learns when a request really left.

A 429 seen by any process pauses the organisation for all: `penalize` sets
``{prefix}:budget-pause/{org}``, keeping the later expiry (``SET NX PX`` + ``PEXPIRE GT`` in one
MULTI), and the script reads it before reserving; a caller already holding a slot sends it (at most
`HORIZON` of requests).

Clocks: slots and pauses run on Redis' clock (the script's ``TIME``), so the hosts' clocks need not
agree; a waiter sleeps the remaining time measured from when Redis answered, and counts its lateness
from when it asked (`RedisOrgBudgets._take`).

The client is bound to the event loop that first uses it: create one per event loop and `aclose()` it
there.

    budgets = RedisOrgBudgets("redis://127.0.0.1:6379/0", headroom=settings.meraki_api_share)
    pool = TargetPool(budgets=budgets)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from keyturn.engine.ratelimit import SEND_JITTER, OnWire, Pacing, per_second
from keyturn.engine.redis_access import client, map_redis_errors, redacted_url
from keyturn.errors import LimitsUnavailable

__all__ = ["HORIZON", "RedisOrgBudgets"]

log = logging.getLogger("keyturn.engine.shared_budgets")

# A waiter told to ask again asks no sooner than this, instead of spinning.
_RETRY = 0.001


# `keyturn.engine.ratelimit.Pacing.reserve` in microseconds of Redis' clock. Sends are logged in a
# sorted set (member: the reservation's ticket, score: its slot, raised when the sender woke or put
# the request on the wire late), the `limit`-th latest of which a slot must be `window` after.
# KEYS: next theoretical arrival time, pause, send log.
# ARGV: interval, horizon, limit, window, tolerance, ticket.
# Returns {1, wait, slot}: a slot is reserved `wait` µs from now (`slot` on Redis' clock); {0, wait}:
# nothing reserved, ask again after `wait` µs (the organisation is paused, or the next free slot lies
# beyond the horizon).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {0, paused * 1000} end
local interval, horizon = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tat - tonumber(ARGV[5]), now)
local nth = redis.call('ZREVRANGE', KEYS[3], limit - 1, limit - 1, 'WITHSCORES')
if nth[2] then slot = math.max(slot, tonumber(nth[2]) + window) end
if slot - now > horizon then return {0, slot - now - horizon} end
local nxt = math.max(tat, slot) + interval
local keep = math.ceil((nxt + window - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', keep)
redis.call('ZADD', KEYS[3], string.format('%d', slot), ARGV[6])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -2 * limit - 1)
redis.call('PEXPIRE', KEYS[3], keep)
return {1, slot - now, string.format('%d', slot)}
"""
# How far ahead a slot may be reserved. A process holds at most one reserved slot per organisation
# (its waiters queue behind one lock), so this caps how many processes wait on slots at once
# (0.5 s / 0.116 s: 4) — the others ask again later — and how many requests a 429 cannot stop. It
# also leaves a late sender's report ~0.5 s to reach the send log before the slot it pushes back is
# reserved (`limit` x `interval` after its own, minus the horizon).
HORIZON = 0.5
# A request leaving later than this after its slot is reported (smaller delays are within the margins).
_REPORT_LATE = 0.002


class RedisOrgBudgets:
    """`Budgets` shared by every process through Redis: one request per organisation every `interval`
    seconds (`limit` per second, paced; see the module docstring).

    `acquire` waits (never busy: it sleeps until its reserved slot, the pause's end, or the horizon
    moving) and raises `LimitsUnavailable` when Redis does not answer. Within a process one waiter per
    organisation holds a slot at a time; the others queue behind it in arrival order. A request that
    left late — its event loop woke it late, or its connection took a while (`OnWire`) — is reported
    (background task) so later slots keep their distance.
    `penalize` pauses the organisation in this process at once and in Redis from a background task;
    `apenalize` is the same, awaited. `penalties()` counts the 429s reported in this process;
    `late_sends` the delays past `_REPORT_LATE` (seconds, the last 10,000, for benchmarks).
    """

    def __init__(self, url: str, rate: float = 10.0, burst: int = 10, headroom: float = 0.9, *,
                 jitter: float = SEND_JITTER, prefix: str = "keyturn", timeout: float = 5.0) -> None:
        self.limit = per_second(rate, burst, headroom)
        self.pacing = Pacing.for_limit(self.limit, jitter)
        self.interval = self.pacing.interval
        self.prefix = prefix
        self.where = redacted_url(url)
        self.waited = 0.0  # seconds this process's callers spent waiting (benchmarks, metrics)
        self.late_sends: deque[float] = deque(maxlen=10_000)
        self._redis = client(url, timeout)
        self._reserve = self._redis.register_script(_RESERVE)
        self._args = [math.ceil(self.interval * 1e6), math.ceil(HORIZON * 1e6), self.limit,
                      math.ceil(self.pacing.window * 1e6), math.floor(self.pacing.tolerance * 1e6)]
        self._tickets = itertools.count()
        self._token = secrets.token_hex(6)
        self._locks: dict[str, asyncio.Lock] = {}
        self._paused: dict[str, float] = {}  # org → time.monotonic() this process waits until
        self._background: set[asyncio.Task[None]] = set()
        self._penalties = 0

    def pause_key(self, org: str) -> str:
        return f"{self.prefix}:budget-pause/{org}"

    def slot_key(self, org: str) -> str:
        return f"{self.prefix}:budget-next/{org}"

    def log_key(self, org: str) -> str:
        return f"{self.prefix}:budget-sent/{org}"

    async def acquire(self, org: str) -> OnWire:
        """Wait until `org` is not paused and this caller's slot has come; send at once, and call the
        result when the request is on the wire."""
        lock = self._locks.setdefault(org, asyncio.Lock())
        async with lock:
            while True:
                wait = self._paused.get(org, 0.0) - time.monotonic()
                if wait > 0:
                    await self._sleep(wait)
                    continue
                ticket = f"{self._token}:{next(self._tickets)}"
                slot, earliest, deadline = await self._take(org, ticket)
                await self._sleep(deadline - time.monotonic())
                if slot is None or self._paused.get(org, 0.0) > time.monotonic():
                    continue  # a 429 seen here while we slept gives the slot up (its log entry stays)
                return _Late(self, org, ticket, slot, earliest)

    async def _sleep(self, wait: float) -> None:
        if wait > 0:
            self.waited += wait
            await asyncio.sleep(wait)

    async def _take(self, org: str, ticket: str) -> tuple[int | None, float, float]:
        """Reserve a slot: (its time in µs of Redis' clock, earliest, deadline), or (None, _, when to ask
        again); times on this process's monotonic clock. Redis read its clock somewhere between sending
        the call and reading the answer — both can lag on a busy event loop — so the slot falls at the
        earliest `wait` after the send and at the latest `wait` after the answer: the caller sleeps to
        the latest (never early), and its lateness is counted from the earliest (never understated)."""
        with map_redis_errors(self.where, f"taking a request slot of organisation {org}"):
            sent = time.monotonic()
            reply = await self._reserve(
                keys=[self.slot_key(org), self.pause_key(org), self.log_key(org)], args=[*self._args, ticket])
            answered = time.monotonic()
        wait = float(reply[1]) / 1e6
        if not reply[0]:
            return None, sent, answered + max(wait, _RETRY)
        return int(reply[2]), sent + wait, answered + wait

    async def _report_late(self, org: str, ticket: str, at_us: int) -> None:
        try:
            with map_redis_errors(self.where, f"logging a late request of organisation {org}"):
                await self._redis.zadd(self.log_key(org), {ticket: at_us}, xx=True, gt=True)
        except LimitsUnavailable as exc:
            log.warning("%s (the next slots keep only the pacing's margin)", exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def penalize(self, org: str, retry_after: float) -> None:
        """Meraki answered 429: pause `org` for `retry_after` s, here at once and in every process
        as soon as a background task has told Redis. Call it from inside the running event loop."""
        self._penalties += 1
        wait = self._pause_here(org, retry_after)
        if wait > 0:
            self._spawn(self._publish(org, wait))

    async def apenalize(self, org: str, retry_after: float) -> None:
        """`penalize`, returning once Redis holds the pause (`LimitsUnavailable` if it cannot)."""
        self._penalties += 1
        wait = self._pause_here(org, retry_after)
        if wait > 0:
            await self._store_pause(org, wait)

    def penalties(self) -> int:
        return self._penalties

    def _pause_here(self, org: str, retry_after: float) -> float:
        wait = max(0.0, retry_after)
        self._paused[org] = max(self._paused.get(org, 0.0), time.monotonic() + wait)
        return wait

    async def _publish(self, org: str, wait: float) -> None:
        try:
            await self._store_pause(org, wait)
        except LimitsUnavailable as exc:
            # Not unlimited: this process holds the pause, and the others fail on the same Redis.
            log.warning("%s (the %g s pause of organisation %s holds in this process only)", exc, wait, org)

    async def _store_pause(self, org: str, wait: float) -> None:
        ms = max(1, math.ceil(wait * 1000))
        key = self.pause_key(org)
        with map_redis_errors(self.where, f"pausing organisation {org}"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(key, b"429", px=ms, nx=True)
                pipe.pexpire(key, ms, gt=True)  # a longer pause already set by another process stays
                await pipe.execute()

    async def aclose(self) -> None:
        """Wait for the pauses and late sends still being published, then close the connections."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._redis.aclose()


class _Late:
    """`OnWire` of one granted request: reports how late it left after its slot, when it woke (at once)
    and when it went on the wire (if later still)."""

    def __init__(self, budgets: RedisOrgBudgets, org: str, ticket: str, slot_us: int,
                 earliest: float) -> None:
        self._budgets, self._org, self._ticket = budgets, org, ticket
        self._slot_us, self._earliest = slot_us, earliest
        self._reported = 0.0
        self._report()

    def __call__(self) -> None:
        self._report()

    def _report(self) -> None:
        late = time.monotonic() - self._earliest
        if late - self._reported > _REPORT_LATE:
            self._reported = late
            self._budgets.late_sends.append(late)
            self._budgets._spawn(self._budgets._report_late(
                self._org, self._ticket, self._slot_us + math.ceil(late * 1e6)))
