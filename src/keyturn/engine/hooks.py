"""Test hook: abort the process at a rotation step boundary, to prove crash safety.

Set `KEYTURN_TEST_KILL_AT=<step>` (a `Step` value, e.g. `write_ahead`) and the engine calls
`os._exit(137)` — no cleanup, no finally blocks, like `kill -9` — right after that step: after its
journal record is durable, or, for a step the engine journals together with the next one (verify
current, generate, apply, verify new, scripts), right after the step's own work. Unset (the normal
case) it does nothing. It exists only so integration tests can kill the engine between any two steps
and then check that `keyturn recover` leaves every account with a vault secret that logs in. Do not
set it in production.
"""

from __future__ import annotations

import os
from collections.abc import Callable

KILL_ENV = "KEYTURN_TEST_KILL_AT"
KILL_EXIT_CODE = 137

_observer: Callable[[str], None] | None = None


def observe(observer: Callable[[str], None] | None) -> None:
    """Measurement hook (`python -m bench --only cost`): `observer(step)` at every step boundary, where
    the kill hook would fire; None removes it."""
    global _observer
    _observer = observer


def kill_point(step: str) -> None:
    """Exit the process at once if the kill hook names `step` (and tell the observer, if any)."""
    if _observer is not None:
        _observer(step)
    if os.environ.get(KILL_ENV) == step:
        os._exit(KILL_EXIT_CODE)
