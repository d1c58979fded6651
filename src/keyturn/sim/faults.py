"""Fault switches shared by every simulator (DESIGN §6).

One `Faults` object per simulated device or Meraki organisation. Switches are plain data, set at
start-up (lab flags) or at run time through the control API (`Faults.update(**json)`), and read by the
protocol front-ends at well-defined points:

    latency            seconds added before every answer
    error_rate         probability of answering 5xx (RESTCONF 503, Meraki 500/502/503) instead
    timeout_rate       probability of accepting a request and never answering it
    reset_rate         probability of closing the connection without an answer
    drop_after_apply   the next N writes are applied, then the connection is dropped unanswered
    refuse_passwords   the next N password changes are refused with a policy error
    rate_limit_storm   the next N requests are answered 429 (Meraki; Retry-After `retry_after`)
    redirect_on_write  Meraki: answer writes with 302 to a shard host (the "302 turns PUT into GET" hazard)
    redirect_status    Meraki: the 3xx status `redirect_on_write` uses (302 default; 307/308 keep the body)
    refuse_message     the 400 text `refuse_passwords` answers with ("" = the simulator's default)
    down               refuse service entirely (connection closed at once)

Decisions use a per-object `random.Random(seed)` so a lab run is reproducible with `--seed`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from keyturn.errors import SimulatorError


@dataclass
class Faults:
    latency: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    reset_rate: float = 0.0
    drop_after_apply: int = 0
    refuse_passwords: int = 0
    rate_limit_storm: int = 0
    retry_after: int = 1
    redirect_on_write: bool = False
    redirect_status: int = 302
    refuse_message: str = ""
    down: bool = False
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def update(self, **changes: Any) -> None:
        """Apply switch values from the control API; unknown names are an error (no silent typos)."""
        names = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise SimulatorError(f"unknown fault switch(es): {', '.join(unknown)}; known: {sorted(names)}")
        for name, value in changes.items():
            current = getattr(self, name)
            try:
                if isinstance(current, bool) or name in ("redirect_on_write", "down"):
                    value = bool(value)
                elif isinstance(current, int) and name != "seed":
                    value = int(value)
                elif isinstance(current, float):
                    value = float(value)
            except (TypeError, ValueError) as exc:
                raise SimulatorError(f"fault switch {name}: bad value {value!r}") from exc
            setattr(self, name, value)
        if "seed" in changes:
            self._rng = random.Random(self.seed)

    def reset(self) -> None:
        seed = self.seed
        for f in fields(self):
            if not f.name.startswith("_") and f.name != "seed":
                setattr(self, f.name, f.default)
        self._rng = random.Random(seed)

    def snapshot(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def roll(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability

    def take(self, name: str) -> bool:
        """Consume one unit of a counting switch (`drop_after_apply`, ...); True if one was left."""
        left = int(getattr(self, name))
        if left <= 0:
            return False
        setattr(self, name, left - 1)
        return True
