"""Structured JSON logs: one JSON object per line, never a secret.

    {"ts": "2026-05-01T10:00:00.123456+00:00", "level": "info", "logger": "keyturn.api",
     "msg": "POST /rotations 202", "record_uid": "...", "rotation_id": "...", "status": 202}

Known context keys passed through ``extra=`` (`CONTEXT_KEYS`) become top-level fields; anything else a
library attaches is dropped. Exceptions are logged as their type and one-line keyturn message only —
a foreign exception's text or traceback may quote a value, so it is not written unless KEYTURN_DEBUG.
`Secret` values format as redacted on their own; this formatter additionally refuses to serialise
anything that is not a plain JSON value.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from keyturn.errors import KeyturnError

CONTEXT_KEYS = ("record_uid", "rotation_id", "request_id", "actor", "method", "path", "status",
                "duration_ms", "target", "outcome", "client")
_PLAIN = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    """Format a `LogRecord` as one JSON line (see module docstring)."""

    def __init__(self, *, debug: bool = False) -> None:
        super().__init__()
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = value if isinstance(value, _PLAIN) else str(value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["error_type"] = type(exc).__name__
            if isinstance(exc, KeyturnError):
                out["error"] = str(exc).splitlines()[0] if str(exc) else ""
            if self.debug:
                out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record is emitted, not the one at configuration time:
    a stderr replaced later (a test runner's capture, a daemon's redirect) must not turn every log line
    into a "Logging error" on a closed stream."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def configure_logging(level: str = "INFO", *, stream: IO[str] | None = None, debug: bool = False) -> None:
    """Route the root logger (and uvicorn's) to one JSON handler on `stream` (default: the current stderr,
    looked up at each record)."""
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter(debug=debug))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # Our own request log replaces uvicorn's access log (which is not JSON).
    logging.getLogger("uvicorn.access").disabled = True


__all__ = ["CONTEXT_KEYS", "JsonFormatter", "configure_logging"]
