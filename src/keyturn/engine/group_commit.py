"""Group commit: the durable phases of concurrent rotations share one transaction.

Every durable phase of a rotation (`RotationEngine.unit`) is a unit of work: one transaction, one
writer-lock hold, one audit-chain append, one commit. When a batch runs 64 rotations at once, the
phases ready at the same moment are written together instead — one transaction for all of them, the
audit entries appended to the chain in one go, one commit — and each rotation goes
on only after that commit, exactly as it would after its own. What a phase makes durable, and when,
does not change: a rotation never passes a step boundary before its step is committed, and a crash
leaves each rotation of the group as a crash after (or before) its own commit would.

There is no waiting to fill a group: a worker thread that starts takes every phase queued by then (at
most `limit`). A lone rotation is a group of one.

If any phase of a group raises (a lost lease, a record that vanished, a database error), the group's
transaction is rolled back and every phase of it is run again alone, in its own transaction: each gets
the result or the error it would have got without grouping. A phase must therefore change nothing but
the database before it returns (the engine's phases only queue journal steps, which they restore when
they raise; see `_Rotation.flush`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")

_Phase = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class GroupCommit:
    """Runs phases (`fn()` inside a transaction opened by `transaction`) on `executor`, grouped.

    `transaction(fns)` runs every function in `fns`, in order, in one transaction and returns their
    results, or raises (nothing committed). `parallel`: how many groups may be written at once (the
    executor's threads that write; 1 for SQLite, whose writers queue anyway). Thread-safe; `run` is
    awaited from an event loop."""

    def __init__(self, transaction: Callable[[Sequence[Callable[[], Any]]], list[Any]],
                 executor: Executor, *, limit: int = 32, parallel: int = 1) -> None:
        if limit < 1 or parallel < 1:
            raise ValueError("limit and parallel must be at least 1")
        self._transaction = transaction
        self._executor = executor
        self._limit = limit
        self._parallel = parallel
        self._queued: collections.deque[_Phase] = collections.deque()
        self._take = threading.Lock()
        self._waiting = 0      # drains submitted that have not taken their group yet
        self.groups = 0        # transactions written (for the bench: phases per transaction)
        self.phases = 0
        self.replays = 0       # groups rolled back and run again phase by phase

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()`'s result once the transaction it ran in has committed, or what it raised alone."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        phase: _Phase = (fn, future, loop)
        with self._take:
            self._queued.append(phase)
            # A drain that has not started yet will take this phase too: no need for another.
            submit = self._waiting < self._parallel
            if submit:
                self._waiting += 1
        if submit:
            try:
                self._executor.submit(self._drain)
            except RuntimeError:   # the executor is shut down: withdraw the phase unless a group took it
                with self._take:
                    self._waiting -= 1
                    if phase in self._queued:
                        self._queued.remove(phase)
                        raise
        return await future

    def _drain(self) -> None:
        """On a worker thread: write one group of what is queued now. What is left beyond `limit`
        goes to another drain, queued behind the executor's other work (nothing waits long)."""
        with self._take:
            self._waiting -= 1
            group = [self._queued.popleft() for _ in range(min(self._limit, len(self._queued)))]
            more = bool(self._queued) and self._waiting < self._parallel
            if more:
                self._waiting += 1
        if more:
            try:
                self._executor.submit(self._drain)
            except RuntimeError:   # shutting down: nothing else will run, so write the rest here
                with self._take:
                    self._waiting -= 1
                    group += list(self._queued)
                    self._queued.clear()
        for at in range(0, len(group), self._limit):
            self._write(group[at:at + self._limit])

    def _write(self, group: list[_Phase]) -> None:
        if not group:
            return
        try:
            results = self._transaction([fn for fn, _f, _l in group])
        except Exception as exc:
            if len(group) == 1:
                _settle([(group[0], None, exc)])
                return
            self.replays += 1
            for at, phase in enumerate(group):     # each alone: its own result or its own error
                try:
                    _settle([(phase, self._transaction([phase[0]])[0], None)])
                except Exception as alone:
                    _settle([(phase, None, alone)])
                except BaseException as fatal:
                    _settle([(rest, None, fatal) for rest in group[at:]])
                    raise
            return
        except BaseException as fatal:   # not a phase's trouble: nobody may wait forever
            _settle([(phase, None, fatal) for phase in group])
            raise
        self.groups += 1
        self.phases += len(group)
        _settle([(phase, result, None) for phase, result in zip(group, results, strict=True)])


def _settle(outcomes: list[tuple[_Phase, Any, BaseException | None]]) -> None:
    """Hand each phase's result or error to its event loop: one wake-up per loop for the group (a
    cancelled waiter, or a closed loop, drops it)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
    for (_fn, future, loop), result, error in outcomes:
        by_loop.setdefault(loop, []).append((future, result, error))

    def deliver(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
        for future, result, error in items:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):   # the loop is closed: its waiters are gone
            loop.call_soon_threadsafe(deliver, items)


__all__ = ["GroupCommit"]
