"""How many anonymous denials (401s) a client may write to the audit log.

Every denial used to become an `api.denied` audit entry, so anyone who can reach the port could grow
the tamper-evident log — which is never pruned — without limit. Each client address now has a budget
of `per_minute` audited 401s (a token bucket holding at most `burst`); past it, denials are counted,
not written, and the next audited denial from that client carries ``suppressed: N`` — nothing is
hidden, only compressed. 403s (a valid token without the permission) are always audited: they need a
token, and they name it. Counters and the warning log still see every denial.

The table is bounded (`max_clients`, least recently seen dropped first), so a spray of source
addresses cannot grow memory either; a dropped client starts with a full budget.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Client:
    tokens: float
    seen: float
    suppressed: int = 0


class DenialBudget:
    """`admit(client)` → None to skip auditing this denial, else how many were skipped before it."""

    def __init__(self, per_minute: float = 30.0, burst: int = 30, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("per_minute > 0, burst >= 1 and max_clients >= 1 are required")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def admit(self, client: str) -> int | None:
        now = self._clock()
        entry = self._clients.pop(client, None)
        if entry is None:
            entry = _Client(tokens=self.burst, seen=now)
        entry.tokens = min(self.burst, entry.tokens + (now - entry.seen) * self.rate)
        entry.seen = now
        self._clients[client] = entry                  # most recently seen last
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        if entry.tokens < 1:
            entry.suppressed += 1
            return None
        entry.tokens -= 1
        skipped, entry.suppressed = entry.suppressed, 0
        return skipped


__all__ = ["DenialBudget"]
