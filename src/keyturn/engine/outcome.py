"""Names the rotation engine speaks in: steps, outcomes, and the result of one rotation (DESIGN §3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Step(enum.StrEnum):
    """The ten steps of a rotation, in order. Each is journaled and audited as `rotation.<step>`."""

    LOCK = "lock"
    VERIFY_CURRENT = "verify_current"
    GENERATE = "generate"
    WRITE_AHEAD = "write_ahead"
    APPLY = "apply"
    PERSIST = "persist"
    VERIFY_NEW = "verify_new"
    ROLLBACK = "rollback"          # part of step 7 when the new secret is rejected
    COMMIT = "commit"
    RETIRE = "retire"              # after the commit: revoke the old secret (`Generating` targets)
    SCRIPTS = "scripts"
    AUDIT = "audit"
    RECOVER = "recover"            # written by recovery, not part of a normal run


#: The ten step boundaries of DESIGN §3, in order (also the values `KEYTURN_TEST_KILL_AT` accepts).
STEPS: tuple[Step, ...] = (
    Step.LOCK, Step.VERIFY_CURRENT, Step.GENERATE, Step.WRITE_AHEAD, Step.APPLY, Step.PERSIST,
    Step.VERIFY_NEW, Step.COMMIT, Step.SCRIPTS, Step.AUDIT,
)


class StepStatus(enum.StrEnum):
    OK = "ok"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNKNOWN = "unknown"      # outcome of the step could not be determined (e.g. apply timed out)


class Outcome(enum.StrEnum):
    """How a rotation ended (the outcome table of DESIGN §3)."""

    ROTATED = "rotated"
    ROTATED_UNVERIFIABLE = "rotated_unverifiable"
    ROTATED_SCRIPT_ERRORS = "rotated_script_errors"
    ROLLED_BACK = "rolled_back"
    UNVERIFIED = "unverified"
    FAILED = "failed"
    NEEDS_ATTENTION = "needs_attention"

    @property
    def rotated(self) -> bool:
        """True when the new secret is current in the vault."""
        return self in (Outcome.ROTATED, Outcome.ROTATED_UNVERIFIABLE, Outcome.ROTATED_SCRIPT_ERRORS)

    @property
    def success(self) -> bool:
        """True for the outcomes `keyturn rotate` exits 0 on (rotated, rotated_unverifiable)."""
        return self in (Outcome.ROTATED, Outcome.ROTATED_UNVERIFIABLE)

    @property
    def flagged(self) -> bool:
        """True when the account keeps two secrets and recovery (or a person) must finish it."""
        return self in (Outcome.UNVERIFIED, Outcome.NEEDS_ATTENTION)


class RotationState(enum.StrEnum):
    """Lifecycle of a rotation row: `running` until an outcome is reached.

    `unverified` and `needs_attention` rotations stay open for recovery; the others are final.
    """

    RUNNING = "running"
    UNVERIFIED = "unverified"
    NEEDS_ATTENTION = "needs_attention"
    DONE = "done"


def state_for(outcome: Outcome) -> RotationState:
    if outcome is Outcome.UNVERIFIED:
        return RotationState.UNVERIFIED
    if outcome is Outcome.NEEDS_ATTENTION:
        return RotationState.NEEDS_ATTENTION
    return RotationState.DONE


@dataclass(frozen=True, slots=True)
class ScriptSummary:
    """A post-rotation script's result as stored on the rotation (output already redacted by the runner)."""

    name: str
    ok: bool
    exit_code: int | None
    duration: float
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    owner_uid: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "ok": self.ok, "exit_code": self.exit_code,
            "duration": round(self.duration, 3), "error": self.error, "stdout": self.stdout,
            "stderr": self.stderr, "owner_uid": self.owner_uid,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScriptSummary:
        return cls(
            name=str(data.get("name", "")), ok=bool(data.get("ok")), exit_code=data.get("exit_code"),
            duration=float(data.get("duration", 0.0)), error=data.get("error"),
            stdout=str(data.get("stdout", "")), stderr=str(data.get("stderr", "")),
            owner_uid=str(data.get("owner_uid", "")),
        )


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What one rotation (or one recovery) ended in. Never carries a secret value."""

    record_uid: str
    title: str
    target: str
    outcome: Outcome
    reason: str
    rotation_id: str | None = None
    duration: float = 0.0
    scripts: tuple[ScriptSummary, ...] = field(default_factory=tuple)
    verified_by: str | None = None   # how the new secret was proved: "login", "stored hash", ...

    def to_json(self) -> dict[str, Any]:
        return {
            "record_uid": self.record_uid, "title": self.title, "target": self.target,
            "outcome": str(self.outcome), "reason": self.reason, "rotation_id": self.rotation_id,
            "duration": round(self.duration, 3), "scripts": [s.to_json() for s in self.scripts],
            "verified_by": self.verified_by,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RotationResult:
        """The inverse of `to_json` (a worker's result read back by the process that requested it)."""
        return cls(
            record_uid=str(data.get("record_uid", "")), title=str(data.get("title", "")),
            target=str(data.get("target", "")), outcome=Outcome(data.get("outcome", Outcome.FAILED.value)),
            reason=str(data.get("reason", "")), rotation_id=data.get("rotation_id"),
            duration=float(data.get("duration", 0.0)),
            scripts=tuple(ScriptSummary.from_json(s) for s in data.get("scripts") or ()),
            verified_by=data.get("verified_by"),
        )
