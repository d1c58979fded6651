"""What the rotation and the recovery state machines share: which errors prove nothing changed, how a
verdict and a script run are described, how a configuration is saved. Both import it; neither imports
the other's module at import time (`rotate` → `recovery` → here)."""

from __future__ import annotations

from collections.abc import Sequence

from keyturn.engine.outcome import ScriptSummary
from keyturn.engine.ports import ScriptResultLike
from keyturn.errors import AccountNotFound, ChangeRejected, KeyturnError, RateLimited, TargetAuthRejected
from keyturn.secret import Secret
from keyturn.targets.base import Account, Check, Persisting, Proof, Target

# Errors from `change` that prove nothing was changed on the device: the candidate is dropped.
REFUSED = (ChangeRejected, AccountNotFound, TargetAuthRejected, RateLimited)


def can_verify(target: Target, account: Account) -> bool:
    """Whether `target` can test a login for `account` (a per-account verifier may turn it on)."""
    verifiable = getattr(target, "verifiable", None)
    if callable(verifiable):
        return bool(verifiable(account))
    return bool(target.can_verify)


async def save_config(target: Persisting, account: Account, secret: Secret | None) -> None:
    """`target.persist` with the secret that now logs in (a self-service account must save with its
    new secret: the old one no longer works)."""
    await target.persist(account, secret=secret)


def proved(check: Check) -> str:
    """``"by stored hash (type 9 secret)"`` — how a verdict was reached, for journal and audit."""
    how = f"by {check.proof.value}" if check.proof is not Proof.NONE else "without a probe"
    said = "; ".join(part for part in (check.detail, check.warning) if part)
    return f"{how} ({said})" if said else how


def describe(exc: BaseException) -> str:
    """One line for the journal: our errors carry safe messages; foreign ones are named, not quoted."""
    return str(exc) if isinstance(exc, KeyturnError) else f"internal error ({type(exc).__name__})"


def summarize(results: Sequence[ScriptResultLike]) -> tuple[ScriptSummary, ...]:
    return tuple(ScriptSummary(
        name=r.name, ok=r.ok, exit_code=r.exit_code, duration=r.duration, error=r.error,
        stdout=r.stdout, stderr=r.stderr, owner_uid=r.owner_uid,
    ) for r in results)


def scripts_message(scripts: Sequence[ScriptSummary]) -> str:
    failed = [s for s in scripts if not s.ok]
    if not scripts:
        return "no post-rotation scripts attached"
    if not failed:
        return f"{len(scripts)} script(s) succeeded"
    first = failed[0]
    why = first.error or f"exit code {first.exit_code}"
    return f"{len(failed)} of {len(scripts)} script(s) failed; first: {first.name} ({why})"


__all__ = ["REFUSED", "can_verify", "describe", "proved", "save_config", "scripts_message", "summarize"]
