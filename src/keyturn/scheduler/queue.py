"""Due-time priority queue: at most one entry per record, earliest due first (heapq, lazy deletion)."""

from __future__ import annotations

import heapq
import itertools
from datetime import datetime


class DueQueue:
    """`push` replaces a record's entry; `pop_due(now)` takes the earliest entry due at `now`.

    Ties are broken by push order, so records overdue at the same instant keep a stable order.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, str]] = []
        self._live: dict[str, tuple[datetime, int]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, uid: object) -> bool:
        return uid in self._live

    def push(self, uid: str, due: datetime) -> None:
        seq = next(self._seq)
        self._live[uid] = (due, seq)
        heapq.heappush(self._heap, (due, seq, uid))

    def remove(self, uid: str) -> None:
        self._live.pop(uid, None)

    def due_of(self, uid: str) -> datetime | None:
        entry = self._live.get(uid)
        return entry[0] if entry else None

    def _prune(self) -> None:
        while self._heap:
            due, seq, uid = self._heap[0]
            if self._live.get(uid) == (due, seq):
                return
            heapq.heappop(self._heap)

    def peek(self) -> tuple[str, datetime] | None:
        self._prune()
        if not self._heap:
            return None
        due, _, uid = self._heap[0]
        return uid, due

    def pop_due(self, now: datetime) -> tuple[str, datetime] | None:
        """The earliest entry with due <= now, removed; None when nothing is due."""
        top = self.peek()
        if top is None or top[1] > now:
            return None
        heapq.heappop(self._heap)
        del self._live[top[0]]
        return top

    def items(self) -> list[tuple[str, datetime]]:
        """(uid, due) for every entry, earliest first."""
        return [(uid, due) for uid, (due, _) in sorted(self._live.items(), key=lambda kv: kv[1])]
