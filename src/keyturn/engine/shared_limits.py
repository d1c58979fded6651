"""`DeviceSlots`: at most `per_device` holders of one device across every keyturn process, through Redis
(for workers on several hosts; the per-organisation Meraki budget is `keyturn.engine.shared_budgets`).

`per_device` redis-py locks per device (``SET NX PX`` with a random token), renewed every ttl/3 while
held; the slot of a holder that died frees itself when its lock expires, `ttl` seconds after the last
renewal. Slot expiries run on Redis' clock. Redis unreachable → `LimitsUnavailable` (nothing is
granted without it: `keyturn.engine.redis_access`).

The client is bound to the event loop that first uses it: create one per event loop and `aclose()` it
there.

    slots = DeviceSlots("redis://127.0.0.1:6379/0", per_device=1, ttl=60)
    async with slots.hold(resource_uid, wait=300):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from keyturn.engine.redis_access import client, map_redis_errors, redacted_url
from keyturn.errors import DeviceBusy, LimitsUnavailable

if TYPE_CHECKING:
    from redis.asyncio.lock import Lock

__all__ = ["DeviceSlots"]

log = logging.getLogger("keyturn.engine.shared_limits")

_jitter = random.SystemRandom()


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
        self._redis = client(url, timeout)

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
