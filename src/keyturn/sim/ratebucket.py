"""Token buckets for the simulators' rate budgets (Meraki: 10 req/s per org + burst, 100 req/s per IP).

A bucket holds at most `capacity` tokens and refills `rate` tokens per second of the injected clock. A
request takes one token. Meraki's documented budget ("10 requests per second, plus an extra 10 in the
first second, a total of 30 in two seconds") is `TokenBucket(rate=10, capacity=10)`: full from idle, 10
at once, then 10 more each second → 30 in the first two seconds.

The clock is injectable (`time.monotonic` by default) so unit tests step time by hand instead of sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Clock = Callable[[], float]
_EPSILON = 1e-9  # float drift in clock arithmetic must not cost a token


class TokenBucket:
    """One budget. `wait()` peeks (seconds until a token), `take()` consumes; neither blocks."""

    def __init__(self, rate: float, capacity: float, *, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a token bucket needs rate > 0 and capacity >= 1")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        if now > self._stamp:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def wait(self) -> float:
        """Seconds until one token is available; 0.0 if one is available now."""
        self._refill()
        if self._tokens >= 1.0 - _EPSILON:
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def take(self) -> bool:
        """Consume one token if available; True on success."""
        if self.wait() > 0.0:
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True


def retry_after_seconds(wait: float) -> int:
    """`Retry-After` value for a wait: whole seconds, at least 1 (the SDK does `int(header)`)."""
    return max(1, math.ceil(wait))
