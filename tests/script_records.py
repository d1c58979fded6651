"""Minimal records for the post-rotation script tests: the shape `keyturn.scripts` reads
(uid, title, type, fields / custom of Field(type, label, value), meta) without a vault."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class F:
    type: str
    label: str | None = None
    value: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class R:
    uid: str
    title: str
    type: str = "login"
    fields: list[F] = field(default_factory=list)
    custom: list[F] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
