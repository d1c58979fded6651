"""Rotate many accounts at once: bounded concurrency overall and per device, results in input order.

    results = await rotate_many(engine, refs, concurrency=64, per_device=1, progress=on_done)

* at most `concurrency` rotations in flight, and at most `per_device` on one resource (a device or
  a Meraki network) — IOS XE serialises configuration sessions, so one at a time is the safe default;
* targets are shared per kind by the engine (connection reuse; the Meraki per-org budget is shared);
* one failure never stops the others: every reference gets a `RotationResult`, in input order;
* `progress(result, done, total)` is called after each rotation finishes (from the event loop).
Duplicate references to the same record are rotated once (the later ones get the same result).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from keyturn.engine.outcome import Outcome, RotationResult
from keyturn.engine.rotate import RotationEngine, describe
from keyturn.errors import KeyturnError

Progress = Callable[[RotationResult, int, int], None]


async def _device_key(engine: RotationEngine, ref: str) -> tuple[str, str]:
    """(record uid, per-device key) — the resource uid, or the record itself when it has none."""
    try:
        record = await engine.db(engine.vault.get, ref)
    except KeyturnError:
        return ref, f"ref:{ref}"
    profile = record.meta.get("rotation") or {}
    resource = profile.get("resource") if isinstance(profile, dict) else None
    return record.uid, str(resource or record.uid)


async def rotate_many(
    engine: RotationEngine, refs: Sequence[str], *, concurrency: int = 64, per_device: int = 1,
    progress: Progress | None = None,
) -> list[RotationResult]:
    """Rotate every record in `refs`; never raises for a single account's trouble."""
    if concurrency < 1 or per_device < 1:
        raise ValueError("concurrency and per_device must be at least 1")
    keys = [await _device_key(engine, ref) for ref in refs]
    overall = asyncio.Semaphore(concurrency)
    devices: dict[str, asyncio.Semaphore] = {}
    by_uid: dict[str, asyncio.Task[RotationResult]] = {}
    total = len({uid for uid, _ in keys})
    done = 0

    async def one(ref: str, device: str) -> RotationResult:
        nonlocal done
        sem = devices.setdefault(device, asyncio.Semaphore(per_device))
        async with sem, overall:
            try:
                result = await engine.rotate(ref)
            except Exception as exc:   # a bug in one rotation must not cancel the batch
                result = RotationResult(record_uid="", title=ref, target="", outcome=Outcome.FAILED,
                                        reason=describe(exc))
        done += 1
        if progress is not None:
            progress(result, done, total)
        return result

    tasks = []
    for ref, (uid, device) in zip(refs, keys, strict=True):
        task = by_uid.get(uid)
        if task is None:
            task = by_uid[uid] = asyncio.create_task(one(ref, device))
        tasks.append(task)
    return list(await asyncio.gather(*tasks))
