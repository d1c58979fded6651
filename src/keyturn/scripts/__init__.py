"""Keeper-compatible post-rotation scripts: attachments, stdin payload, runner, redaction.

The contract is KeeperPAM's post-rotation script protocol (see the README): scripts run unmodified,
receive one base64 line on stdin, and are judged by exit code — plus keyturn's optional `fail_on`
patterns and the engine's verification of the new secret.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyturn.scripts.attachments import ScriptAttachment, attachments_of
    from keyturn.scripts.payload import build_payload, flatten_record
    from keyturn.scripts.runner import ScriptResult, run_rotation_scripts, run_script

# Imported on first use: the vault reads `keyturn.scripts.attachments` on every record write, and the
# runner (asyncio subprocesses, redaction) is for rotations only (CLI start-up, issue 14).
_WHERE = {"ScriptAttachment": "attachments", "attachments_of": "attachments", "build_payload": "payload",
          "flatten_record": "payload", "ScriptResult": "runner", "run_rotation_scripts": "runner",
          "run_script": "runner"}

__all__ = [
    "ScriptAttachment",
    "ScriptResult",
    "attachments_of",
    "build_payload",
    "flatten_record",
    "run_rotation_scripts",
    "run_script",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
