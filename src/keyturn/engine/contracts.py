"""What the recovery and the generated-secret branch need of the rotation engine, as interfaces.

`keyturn.engine.rotate` (the state machine) starts recoveries (`keyturn.engine.recovery`) and hands
platform-generated secrets to `keyturn.engine.generated`; those two call back into the engine and into
one run of it. They depend on these protocols instead of the classes, so `rotate` imports them and
neither imports `rotate`: the engine has no import cycle. `RotationEngine`, `_Rotation` and `Recovery`
satisfy them (mypy checks it where they are passed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from keyturn.engine.accounts import ResolvedAccount
from keyturn.engine.journal import Journal, RotationRow
from keyturn.engine.locks import LockManager
from keyturn.engine.outcome import Outcome, RotationResult, ScriptSummary, Step, StepStatus
from keyturn.engine.ports import VaultLike
from keyturn.secret import Secret
from keyturn.targets.base import Account, Check, Target, Verdict

T = TypeVar("T")


class TargetSource(Protocol):
    def get(self, kind: str) -> Target:
        """The shared target instance of `kind`."""
        ...


class EngineCore(Protocol):
    """The engine's services: vault, journal, locks, targets, the database thread, verification."""

    @property
    def vault(self) -> VaultLike: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def locks(self) -> LockManager: ...
    @property
    def targets(self) -> TargetSource: ...
    @property
    def actor(self) -> str: ...
    @property
    def sleep(self) -> Callable[[float], Awaitable[None]]: ...

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a synchronous vault/journal call off the event loop."""
        ...

    async def unit(self, fn: Callable[[], T]) -> T:
        """Run `fn` off the event loop as one transaction (`Vault.unit`)."""
        ...

    async def verify(self, target: Target, account: Account, secret: Secret, attempts: int) -> Verdict: ...

    async def check(self, target: Target, account: Account, secret: Secret, attempts: int) -> Check:
        """Verify with bounded retries while inconclusive; says how it was proved."""
        ...

    async def run_scripts(self, ra: ResolvedAccount, new: Secret,
                          old: Secret | None) -> tuple[ScriptSummary, ...]: ...


class RotationRun(Protocol):
    """One run of the state machine, as the generated-secret branch drives it."""

    version: int | None
    scripts: tuple[ScriptSummary, ...]
    verified_by: str | None

    @property
    def e(self) -> EngineCore: ...
    @property
    def rid(self) -> str: ...
    @property
    def uid(self) -> str: ...

    def note(self, step: Step, status: StepStatus, message: str, **fields: Any) -> None:
        """Queue a step for the next durable write."""
        ...

    def queue(self, step: Step, status: StepStatus, message: str, fields: dict[str, Any]) -> None:
        """Queue a step without the kill hook (inside a durable write's action)."""
        ...

    async def step(self, step: Step, status: StepStatus, message: str, **fields: Any) -> None: ...

    async def flush(self, action: Callable[[], T], *, then: Step | None = None) -> T:
        """`action` and the queued steps in one transaction."""
        ...

    async def finish(self, outcome: Outcome, reason: str, at: Step | None = None) -> RotationResult: ...

    async def drop_candidate(self) -> None: ...


class Settling(Protocol):
    """A recovery in progress, as the generated-secret branch finishes it."""

    @property
    def e(self) -> EngineCore: ...

    async def step(self, row: RotationRow, step: Step, status: StepStatus, message: str,
                   details: dict[str, Any] | None = None, **fields: Any) -> None: ...

    async def finish(self, row: RotationRow, outcome: Outcome, reason: str, status: StepStatus,
                     scripts: tuple[ScriptSummary, ...] = ()) -> RotationResult:
        """The `recover` step and the outcome, in one transaction."""
        ...

    async def old_secret(self, row: RotationRow, field: str = "password") -> Secret | None: ...

    async def finish_committed(self, row: RotationRow, ra: ResolvedAccount,
                               new: Secret) -> RotationResult: ...
