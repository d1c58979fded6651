"""JSON-lines file sink: one line per audit entry (`formats` jsonl or CEF), appended and fsynced.

The file is opened per batch (so `logrotate`'s move-and-create works without a signal) with mode
0600 when created. A batch is written with one `write` and fsynced before the spool drops it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from keyturn.audit.sinks.base import AuditEvent
from keyturn.audit.sinks.formats import render
from keyturn.errors import AuditSinkUnavailable


class JsonlSink:
    kind: ClassVar[str] = "jsonl"

    def __init__(self, name: str, path: Path, *, fmt: str = "jsonl") -> None:
        self.name = name
        self.path = path
        self.fmt = fmt

    @property
    def destination(self) -> str:
        return str(self.path)

    def render(self, event: AuditEvent) -> bytes:
        return render(event, self.fmt).encode()

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    async def send(self, messages: Sequence[bytes]) -> None:
        data = b"".join(m + b"\n" for m in messages)
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as exc:
            # A partial write leaves a torn line at worst; the batch is retried whole (at-least-once).
            raise AuditSinkUnavailable(
                f"audit sink {self.name}: cannot append to {self.path}: {exc.strerror or exc}"
            ) from exc

    async def aclose(self) -> None:
        return None
