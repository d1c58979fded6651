"""One worker process of tests/integration/test_shared_limits.py (the test starts two or more):

    python -m tests.integration.limits_worker hammer  URL PREFIX ORG START SECONDS COROUTINES
    python -m tests.integration.limits_worker penalize URL PREFIX ORG AT RETRY_AFTER
    python -m tests.integration.limits_worker slots   URL PREFIX DEVICE START SECONDS COROUTINES PER_DEVICE
    python -m tests.integration.limits_worker hold    URL PREFIX DEVICE TTL

START/AT are wall-clock times (`time.time()`) so processes begin together. Each mode prints one JSON
line with what it saw (`hold` prints "held" and then holds until killed).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from redis.asyncio import Redis

from keyturn.engine.shared_budgets import RedisOrgBudgets
from keyturn.engine.shared_limits import DeviceSlots


async def _until(at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.time()))


async def hammer(url: str, prefix: str, org: str, start: float, seconds: float, coroutines: int) -> Any:
    """`coroutines` callers acquiring `org` back to back; the wall time of every grant."""
    budgets = RedisOrgBudgets(url, prefix=prefix)
    grants: list[float] = []
    end = start + seconds

    async def caller() -> None:
        while time.time() < end:
            await budgets.acquire(org)
            grants.append(time.time())

    await budgets.acquire("warm-up")  # connect before the start, not inside the measurement
    await _until(start)
    await asyncio.gather(*(caller() for _ in range(coroutines)))
    await budgets.aclose()
    return {"grants": grants, "limit": budgets.limit, "interval": budgets.interval}


async def penalize(url: str, prefix: str, org: str, at: float, retry_after: float) -> Any:
    """At `at`, report a 429 the way the Meraki target does (`penalize`, synchronous)."""
    budgets = RedisOrgBudgets(url, prefix=prefix)
    await budgets.acquire("warm-up")
    await _until(at)
    said = time.time()
    budgets.penalize(org, retry_after)
    await budgets.aclose()  # waits for the pause to reach Redis
    return {"penalized_at": said, "penalties": budgets.penalties()}


async def slots(url: str, prefix: str, device: str, start: float, seconds: float, coroutines: int,
                per_device: int) -> Any:
    """`coroutines` callers taking `device` back to back. Each counts the holders in Redis on entry
    (INCR/DECR of a key of its own) and records its hold as [entered, leaving]."""
    holders = DeviceSlots(url, per_device=per_device, ttl=10, prefix=prefix, poll=0.01)
    redis = Redis.from_url(url)
    counter = f"{prefix}:test-holders/{device}"
    held: list[tuple[float, float]] = []
    most = 0
    end = start + seconds

    async def caller() -> None:
        nonlocal most
        while time.time() < end:
            async with holders.hold(device, wait=30):
                now = int(await redis.incr(counter))
                entered = time.time()
                most = max(most, now)
                await asyncio.sleep(0.01)
                leaving = time.time()
                await redis.decr(counter)
            held.append((entered, leaving))
            await asyncio.sleep(0)

    await redis.ping()
    await _until(start)
    await asyncio.gather(*(caller() for _ in range(coroutines)))
    await holders.aclose()
    await redis.aclose()
    return {"held": held, "most": most}


async def hold(url: str, prefix: str, device: str, ttl: float) -> None:
    holders = DeviceSlots(url, ttl=ttl, prefix=prefix)
    async with holders.hold(device, wait=30):
        print("held", flush=True)
        await asyncio.Event().wait()  # until SIGKILL


def main(argv: list[str]) -> None:
    mode, url, prefix, name, *rest = argv
    nums = [float(x) for x in rest]
    if mode == "hammer":
        result = asyncio.run(hammer(url, prefix, name, nums[0], nums[1], int(nums[2])))
    elif mode == "penalize":
        result = asyncio.run(penalize(url, prefix, name, nums[0], nums[1]))
    elif mode == "slots":
        result = asyncio.run(slots(url, prefix, name, nums[0], nums[1], int(nums[2]), int(nums[3])))
    elif mode == "hold":
        asyncio.run(hold(url, prefix, name, nums[0]))
        return
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
