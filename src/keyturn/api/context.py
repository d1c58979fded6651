"""What every route needs, in one object on ``app.state.ctx`` (built by `keyturn.api.app.create_app`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, Protocol, TypeVar

from keyturn.api.denials import AuthBackoff, DenialBudget
from keyturn.api.jobs import RotationRunner
from keyturn.api.metrics import Metrics
from keyturn.api.tokens import TokenStore
from keyturn.vault import Vault

P = ParamSpec("P")
T = TypeVar("T")


class SchedulerLike(Protocol):
    """The part of `keyturn.scheduler.Scheduler` the API uses."""

    def reload(self) -> None: ...
    def queue_depth(self) -> int: ...
    def backlog(self) -> int: ...
    def next_due(self) -> list[Any]: ...


@dataclass
class ApiContext:
    vault: Vault
    tokens: TokenStore
    runner: RotationRunner
    metrics: Metrics
    scheduler: SchedulerLike | None = None
    scheduler_alive: Callable[[], bool] | None = None
    denials: DenialBudget = field(default_factory=DenialBudget)   # audited denials per client
    auth_backoff: AuthBackoff = field(default_factory=AuthBackoff)  # bad tokens per client → 429

    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a synchronous vault/journal call off the event loop (the vault is thread-safe)."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def reload_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.reload()


__all__ = ["ApiContext", "SchedulerLike"]
