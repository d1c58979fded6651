"""Rotate many accounts at once: bounded concurrency overall and per device, results in input order.

    results = await rotate_many(engine, refs, concurrency=64, per_device=1, progress=on_done)

* at most `concurrency` rotations in flight, and at most `per_device` on one device — IOS XE
  serialises configuration sessions, so one at a time is the safe default. Meraki networks are not
  limited per network: the per-organisation API budget (`engine.ratelimit`) paces them;
* targets are shared per kind by the engine (connection reuse; the Meraki per-org budget is shared);
* one failure never stops the others: every reference gets a `RotationResult`, in input order;
* `progress(result, done, total)` is called after each rotation finishes (from the event loop);
* rotations start round-robin over the resources (devices, Meraki networks), not in input order: a
  batch listed network by network would otherwise fill every slot with one organisation's rotations,
  all waiting for that organisation's budget while the others' stay idle;
* a record whose target authenticates with the rotated key itself (`OWN_KEY_TARGETS`: a Meraki API
  key, the admin credential of the batch's Meraki rotations) starts after every other rotation of the
  batch ended, so none of them holds the old key when it is revoked.
Duplicate references to the same record are rotated once (the later ones get the same result).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

from keyturn.engine.accounts import OWN_KEY_TARGETS
from keyturn.engine.outcome import Outcome, RotationResult
from keyturn.engine.rotate import RotationEngine
from keyturn.engine.steps import describe
from keyturn.errors import KeyturnError

Progress = Callable[[RotationResult, int, int], None]
_UNLIMITED = contextlib.nullcontext()


# Cloud APIs paced by their own per-organisation budget rather than a per-device session limit.
_BUDGETED_PREFIXES = ("meraki",)


class _Planned(NamedTuple):
    uid: str
    device: str | None     # the per-device limit's key (None: no such limit)
    last: bool             # an `OWN_KEY_TARGETS` profile: after every other rotation
    resource: str          # what the start order is spread over ("" when unknown)


def _plan(engine: RotationEngine, refs: Sequence[str]) -> list[_Planned]:
    """Per ref: the record uid, its per-device key (the resource uid; None when no per-device limit
    applies), `last` for an `OWN_KEY_TARGETS` profile, and the resource. Reads metadata only (nothing
    is decrypted), in one transaction (`Vault.metas`: one query per 500 records)."""
    out: list[_Planned] = []
    for ref, got in zip(refs, engine.vault.metas(refs), strict=True):
        if isinstance(got, KeyturnError):   # the rotation itself reports it
            out.append(_Planned(ref, None, False, ""))
            continue
        uid, meta = got
        profile = meta.get("rotation")
        if not isinstance(profile, dict):
            profile = {}
        checked = str(profile.get("verify_with") or profile.get("target") or "")
        resource = profile.get("resource")
        out.append(_Planned(uid, None if resource is None or checked.startswith(_BUDGETED_PREFIXES)
                            else str(resource), profile.get("target") in OWN_KEY_TARGETS,
                            "" if resource is None else str(resource)))
    return out


def _round_robin(planned: Sequence[_Planned]) -> list[int]:
    """Indexes of `planned` in start order: one per resource in turn (first-seen resource order, each
    resource's own in input order)."""
    queues: dict[str, collections.deque[int]] = {}
    for at, plan in enumerate(planned):
        queues.setdefault(plan.resource, collections.deque()).append(at)
    order: list[int] = []
    while queues:
        for resource in list(queues):
            queue = queues[resource]
            order.append(queue.popleft())
            if not queue:
                del queues[resource]
    return order


async def rotate_many(
    engine: RotationEngine, refs: Sequence[str], *, concurrency: int = 64, per_device: int = 1,
    progress: Progress | None = None,
) -> list[RotationResult]:
    """Rotate every record in `refs`; never raises for a single account's trouble."""
    if concurrency < 1 or per_device < 1:
        raise ValueError("concurrency and per_device must be at least 1")
    keys = await engine.db(_plan, engine, refs)
    overall = asyncio.Semaphore(concurrency)
    devices: dict[str, asyncio.Semaphore] = {}
    by_uid: dict[str, asyncio.Task[RotationResult]] = {}
    total = len({plan.uid for plan in keys})
    first: list[asyncio.Task[RotationResult]] = []
    done = 0

    async def one(ref: str, device: str | None, last: bool) -> RotationResult:
        nonlocal done
        if last:  # wait for the rest of the batch (their results, not their errors, matter here)
            await asyncio.gather(*first, return_exceptions=True)
        sem = devices.setdefault(device, asyncio.Semaphore(per_device)) if device else _UNLIMITED
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

    tasks: dict[int, asyncio.Task[RotationResult]] = {}
    for at in _round_robin(keys):   # tasks take the concurrency slots in the order they are created
        uid, device, last, _resource = keys[at]
        task = by_uid.get(uid)
        if task is None:
            task = by_uid[uid] = asyncio.create_task(one(refs[at], device, last))
            if not last:
                first.append(task)
        tasks[at] = task
    return list(await asyncio.gather(*(tasks[at] for at in range(len(refs)))))
