"""`Secret`: a value that never shows itself by accident.

`repr()`/`str()`/`format()` give `'**********'`; the clear value is only available through
`.reveal()`, which callers use at the three boundaries DESIGN allows (barrier, target call, script stdin).
Pickling is refused so a secret cannot slip into a task queue or a cache unencrypted.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

REDACTED = "**********"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        """Return the clear value. Use only where the value must leave the process."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __getstate__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")
