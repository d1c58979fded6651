"""Per-client budgets for what anyone reaching the port can make the API do: audited denials, and
authentication attempts with bad tokens.

**Audited denials.** Every denial used to become an `api.denied` audit entry, so anyone who can reach
the port could grow the tamper-evident log — which is never pruned — without limit. Each client has a
budget of `per_minute` audited denials (a token bucket holding at most `burst`); past it, denials are
counted, not written, and the next audited denial from that client carries ``suppressed: N`` — nothing
is hidden, only compressed. Anonymous 401s are budgeted per client address; 403s (a valid token
without the permission) per address *and* token, so one noisy token cannot hide another's denials.
Counters and the warning log still see every denial.

**Authentication back-off** (`AuthBackoff`). A client that presents `per_minute` bad tokens (unknown,
revoked, expired, malformed) within a minute is answered 429 with ``Retry-After`` until its budget
refills — *before* its token is looked at, so a guesser learns nothing while throttled. A missing
token does not count (a probe without credentials guesses nothing).

Tables are bounded (`max_clients`, least recently seen dropped first), so a spray of source addresses
cannot grow memory either; a dropped client starts with a full budget.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Client:
    tokens: float
    seen: float
    suppressed: int = 0


class ClientBuckets:
    """One token bucket per client key (`per_minute` tokens a minute, at most `burst`), bounded table."""

    def __init__(self, per_minute: float = 30.0, burst: int = 30, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("per_minute > 0, burst >= 1 and max_clients >= 1 are required")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def _entry(self, client: str) -> _Client:
        """The client's bucket, refilled to now and marked most recently seen."""
        now = self._clock()
        entry = self._clients.pop(client, None)
        if entry is None:
            entry = _Client(tokens=self.burst, seen=now)
        entry.tokens = min(self.burst, entry.tokens + (now - entry.seen) * self.rate)
        entry.seen = now
        self._clients[client] = entry                  # most recently seen last
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return entry


class DenialBudget(ClientBuckets):
    """`admit(client)` → None to skip auditing this denial, else how many were skipped before it."""

    def admit(self, client: str) -> int | None:
        entry = self._entry(client)
        if entry.tokens < 1:
            entry.suppressed += 1
            return None
        entry.tokens -= 1
        skipped, entry.suppressed = entry.suppressed, 0
        return skipped


class AuthBackoff(ClientBuckets):
    """`failed(client)` after each bad token; `retry_after(client)` → seconds to wait, or None."""

    def __init__(self, per_minute: float = 10.0, burst: int = 10, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(per_minute, burst, max_clients=max_clients, clock=clock)

    def failed(self, client: str) -> None:
        entry = self._entry(client)
        entry.tokens = max(0.0, entry.tokens - 1)

    def retry_after(self, client: str) -> int | None:
        """None while the client may still try; else whole seconds until its next attempt is allowed."""
        if client not in self._clients:
            return None
        entry = self._entry(client)
        if entry.tokens >= 1:
            return None
        return max(1, math.ceil((1 - entry.tokens) / self.rate))


__all__ = ["AuthBackoff", "ClientBuckets", "DenialBudget"]
