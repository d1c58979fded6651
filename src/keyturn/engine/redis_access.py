"""The one boundary to Redis for the limits keyturn processes share (`shared_budgets`, `shared_limits`):
a client from a URL, redis-py's errors mapped to `LimitsUnavailable`, URLs shown without credentials.

Redis unreachable, or slower than the client's timeout → `LimitsUnavailable`. Nothing is granted
without Redis: an unlimited fallback would break the very limits these exist for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from keyturn.errors import ConfigError, LimitsUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["INSTALL", "client", "map_redis_errors", "redacted_url"]

INSTALL = "install the worker extra: pip install 'keyturn[worker]'"


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


def client(url: str, timeout: float) -> Redis:
    """An asyncio client for `url`, bound to the event loop that first uses it."""
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
