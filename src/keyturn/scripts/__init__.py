"""Keeper-compatible post-rotation scripts: attachments, stdin payload, runner, redaction.

The contract is KeeperPAM's post-rotation script protocol (see the README): scripts run unmodified,
receive one base64 line on stdin, and are judged by exit code — plus keyturn's optional `fail_on`
patterns and the engine's verification of the new secret.
"""

from __future__ import annotations

from keyturn.scripts.attachments import ScriptAttachment, attachments_of
from keyturn.scripts.payload import build_payload, flatten_record
from keyturn.scripts.runner import ScriptResult, run_rotation_scripts, run_script

__all__ = [
    "ScriptAttachment",
    "ScriptResult",
    "attachments_of",
    "build_payload",
    "flatten_record",
    "run_rotation_scripts",
    "run_script",
]
