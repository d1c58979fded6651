"""Limits shared by every keyturn process through Redis, for workers on several hosts.

* `RedisOrgBudgets` — the per-organisation Meraki `Budgets` (`keyturn.engine.ratelimit`), shared: at
  most `limit` requests per organisation in any 1-second window, summed over every process, where
  `limit` = floor(min(rate, burst) * headroom) — 9 at the default 90 % of Meraki's 10/s. The window is
  the `limits` library's moving window (a Redis list of grant stamps, checked and pushed by its own
  Lua in one step); a waiter sleeps until the window's oldest stamp leaves it. A 429 seen by any
  process pauses the organisation for all: `penalize` sets ``{prefix}:budget-pause/{org}``, keeping
  the later expiry (``SET NX PX`` + ``PEXPIRE GT`` in one MULTI), and every acquire reads it first.
* `DeviceSlots` — at most `per_device` holders of one device across every process: `per_device`
  redis-py locks per device (``SET NX PX`` with a random token), renewed every ttl/3 while held; the
  slot of a holder that died frees itself when its lock expires, `ttl` seconds after the last renewal.

Redis unreachable, or slower than `timeout` → `LimitsUnavailable`. Nothing is granted without Redis:
an unlimited fallback would break the very limits these exist for.

Clocks: `limits` stamps window entries with the caller's wall clock (``time.time()``), so the hosts
must keep their clocks in step (NTP): a skew of d ms lets `limit` grants fit in 1 s minus d ms.
Pauses and slot expiries run on Redis' clock. The bound is on the grant stamps: a request reaches
Meraki after a delay that varies by milliseconds, so a window counted there can be off by as much
(Meraki's own limit, 10/s, is the headroom above the share).

Both classes hold a redis-py asyncio client, bound to the event loop that first uses it: create one
per event loop and `aclose()` it there.

    budgets = RedisOrgBudgets("redis://127.0.0.1:6379/0", headroom=settings.meraki_api_share)
    pool = TargetPool(budgets=budgets)
    slots = DeviceSlots("redis://127.0.0.1:6379/0", per_device=1, ttl=60)
    async with slots.hold(resource_uid, wait=300):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from keyturn.errors import ConfigError, DeviceBusy, LimitsUnavailable

if TYPE_CHECKING:
    from limits.aio.strategies import MovingWindowRateLimiter
    from limits.limits import RateLimitItem
    from redis.asyncio import Redis
    from redis.asyncio.lock import Lock

__all__ = ["DeviceSlots", "RedisOrgBudgets", "map_redis_errors"]

log = logging.getLogger("keyturn.engine.shared_limits")

INSTALL = "install the worker extra: pip install 'keyturn[worker]'"
# A waiter that lost the race for a freed slot re-reads the window after this, instead of spinning.
_RETRY = 0.001
# Float products such as 0.3 * 10 = 3.0000000000000004 must not lose a request to `floor`.
_EPSILON = 1e-9
_jitter = random.SystemRandom()


def redacted_url(url: str) -> str:
    """The Redis URL without credentials or query, for messages (a URL may carry a password)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "the configured Redis URL"
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"


@contextlib.contextmanager
def map_redis_errors(where: str, doing: str) -> Iterator[None]:
    """The one boundary for redis-py: a failed or timed-out Redis call → `LimitsUnavailable`."""
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else "no detail"
        raise LimitsUnavailable(f"shared limits: Redis at {where} failed while {doing} "
                                f"({type(exc).__name__}: {detail}); nothing is granted until it answers"
                                ) from exc


def _client(url: str, timeout: float) -> Redis:
    try:
        from redis.asyncio import Redis
    except ImportError as exc:
        raise ConfigError(f"limits shared in Redis need the redis client: {INSTALL}") from exc
    if timeout <= 0:
        raise ValueError("timeout must be > 0")
    try:
        return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError as exc:
        raise ConfigError(f"{redacted_url(url)} is not a Redis URL (redis://, rediss:// or unix://)"
                          ) from exc


def _limits_uri(url: str) -> str:
    """`limits` spells the asyncio schemes ``async+redis://``, ``async+redis+unix://``."""
    scheme, _, rest = url.partition("://")
    return f"async+redis+unix://{rest}" if scheme == "unix" else f"async+{scheme}://{rest}"


class RedisOrgBudgets:
    """`Budgets` shared by every process through Redis: `limit` requests per organisation per second.

    `acquire` waits (never busy: it sleeps until the pause ends or the window's oldest grant expires)
    and raises `LimitsUnavailable` when Redis does not answer. Within a process one waiter per
    organisation asks Redis at a time; the others queue behind it in arrival order. `penalize` pauses
    the organisation in this process at once and in Redis from a background task; `apenalize` is the
    same, awaited. `penalties()` counts the 429s reported in this process.
    """

    def __init__(self, url: str, rate: float = 10.0, burst: int = 10, headroom: float = 0.9, *,
                 prefix: str = "keyturn", timeout: float = 5.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a budget needs rate > 0 and burst >= 1")
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        try:
            from limits import RateLimitItemPerSecond
            from limits.aio.storage import RedisStorage
            from limits.aio.strategies import MovingWindowRateLimiter
        except ImportError as exc:
            raise ConfigError(f"budgets shared in Redis need the `limits` library: {INSTALL}") from exc
        self.limit = max(1, math.floor(min(rate, burst) * headroom + _EPSILON))
        self.prefix = prefix
        self.where = redacted_url(url)
        self.waited = 0.0  # seconds this process's callers spent waiting (benchmarks, metrics)
        self._redis = _client(url, timeout)
        # One connection pool for the window (limits) and the pause key (us).
        pool: dict[str, Any] = {"connection_pool": self._redis.connection_pool}
        storage = RedisStorage(_limits_uri(url), implementation="redispy", key_prefix=prefix, **pool)
        self._limiter: MovingWindowRateLimiter = MovingWindowRateLimiter(storage)
        self._item: RateLimitItem = RateLimitItemPerSecond(self.limit, 1, namespace="budget")
        self._locks: dict[str, asyncio.Lock] = {}
        self._paused: dict[str, float] = {}  # org → time.monotonic() this process waits until
        self._publishing: set[asyncio.Task[None]] = set()
        self._penalties = 0

    def pause_key(self, org: str) -> str:
        return f"{self.prefix}:budget-pause/{org}"

    def window_key(self, org: str) -> str:
        return f"{self.prefix}:{self._item.key_for(org)}"

    async def acquire(self, org: str) -> None:
        """Wait until `org` is not paused and its window has room, then take one request slot."""
        lock = self._locks.setdefault(org, asyncio.Lock())
        async with lock:
            while True:
                wait = self._paused.get(org, 0.0) - time.monotonic()
                if wait <= 0:
                    later = await self._take(org)
                    if later is None:
                        return
                    wait = later
                self.waited += wait
                await asyncio.sleep(wait)

    async def _take(self, org: str) -> float | None:
        """Take a slot (None), or how long to sleep before the next try."""
        with map_redis_errors(self.where, f"taking a request slot of organisation {org}"):
            paused_ms = await self._redis.pttl(self.pause_key(org))
            if paused_ms > 0:  # another process saw a 429
                return float(paused_ms) / 1000
            if await self._limiter.hit(self._item, org):
                return None
            stats = await self._limiter.get_window_stats(self._item, org)
        if stats.remaining > 0:  # the oldest grant left the window between the two calls
            return _RETRY
        return max(0.0, stats.reset_time - time.time()) + _RETRY

    def penalize(self, org: str, retry_after: float) -> None:
        """Meraki answered 429: pause `org` for `retry_after` s, here at once and in every process
        as soon as a background task has told Redis. Call it from inside the running event loop."""
        self._penalties += 1
        wait = self._pause_here(org, retry_after)
        if wait > 0:
            task = asyncio.get_running_loop().create_task(self._publish(org, wait))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

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
        """Wait for the pauses still being published, then close the connections."""
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)
        await self._redis.aclose()


class DeviceSlots:
    """At most `per_device` holders of one device at a time across every process.

        async with slots.hold("sw01", wait=300):   # DeviceBusy after 300 s without a free slot
            ...

    A held slot is renewed every ttl/3; if its process dies, the slot frees itself `ttl` seconds after
    the last renewal. A process that stalls past `ttl` loses its slot (logged as an error when the
    renewal finds it gone). Waiters poll every `poll` seconds (±50 %, so processes do not march in step).
    """

    def __init__(self, url: str, per_device: int = 1, ttl: float = 60.0, *, prefix: str = "keyturn",
                 poll: float = 0.05, timeout: float = 5.0) -> None:
        if per_device < 1:
            raise ValueError("per_device must be at least 1")
        if ttl <= 0 or poll <= 0:
            raise ValueError("ttl and poll must be > 0")
        self.per_device = per_device
        self.ttl = float(ttl)
        self.poll = poll
        self.prefix = prefix
        self.where = redacted_url(url)
        self._redis = _client(url, timeout)

    def slot_key(self, device: str, slot: int) -> str:
        return f"{self.prefix}:device-slot/{device}/{slot}"

    @contextlib.asynccontextmanager
    async def hold(self, device: str, *, wait: float = 300.0) -> AsyncIterator[None]:
        """Hold one of `device`'s slots for the block. `DeviceBusy` (naming the device) when none
        frees within `wait` seconds; `LimitsUnavailable` when Redis does not answer."""
        lock = await self._take(device, wait)
        renewer = asyncio.get_running_loop().create_task(self._renew(lock, device))
        try:
            yield
        finally:
            renewer.cancel()
            try:
                await asyncio.wait([renewer])
            finally:
                await self._release(lock, device)

    async def _take(self, device: str, wait: float) -> Lock:
        from redis.asyncio.lock import Lock

        deadline = time.monotonic() + max(0.0, wait)
        while True:
            with map_redis_errors(self.where, f"taking a slot of device {device}"):
                for slot in range(self.per_device):
                    lock = Lock(self._redis, self.slot_key(device, slot), timeout=self.ttl,
                                blocking=False, thread_local=False)
                    if await lock.acquire(blocking=False):
                        return lock
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceBusy(f"device {device}: all {self.per_device} slot(s) stayed held by other "
                                 f"rotations for {wait:g} s; try again later", device=device)
            await asyncio.sleep(min(left, self.poll * _jitter.uniform(0.5, 1.5)))

    async def _renew(self, lock: Lock, device: str) -> None:
        from redis.exceptions import LockNotOwnedError

        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                with map_redis_errors(self.where, f"renewing a slot of device {device}"):
                    try:
                        await lock.reacquire()
                    except LockNotOwnedError:
                        log.error("device %s: this process's slot expired while held (it stalled past the "
                                  "%g s ttl); another rotation may hold the device now", device, self.ttl)
                        return
            except LimitsUnavailable as exc:
                log.warning("%s; retrying (the slot expires %g s after its last renewal)", exc, self.ttl)

    async def _release(self, lock: Lock, device: str) -> None:
        from redis.exceptions import LockNotOwnedError

        try:
            with map_redis_errors(self.where, f"releasing a slot of device {device}"):
                try:
                    await lock.release()
                except LockNotOwnedError:
                    log.warning("device %s: the slot had already expired when released", device)
        except LimitsUnavailable as exc:  # the block's own outcome matters more; the slot expires
            log.warning("%s; the slot frees itself within %g s", exc, self.ttl)

    async def aclose(self) -> None:
        await self._redis.aclose()
