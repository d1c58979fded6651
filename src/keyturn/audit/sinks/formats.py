"""Rendering audit events: JSON lines and ArcSight CEF, plus the severity table both use.

JSON line: the entry as one canonical JSON object (sorted keys, no spaces, UTF-8), fields
``action, actor, details, hash, id, prev_hash, record_uid, ts`` and, for entries shipped by the
dispatcher, ``head: {"id", "hash"}`` (the chain head when the entry was taken; see `AuditEvent`).

CEF (ArcSight Common Event Format, rev. 25):
``CEF:0|keyturn|keyturn|<version>|<action>|<name>|<severity>|<extension>``. Header fields escape
``\\`` and ``|``; extension values escape ``\\`` and ``=`` and encode CR/LF as ``\\r``/``\\n`` (a
pipe needs no escape there). Extension keys, always in this order: ``rt`` (ms since epoch),
``externalId`` (audit id), ``suser`` (actor), ``act`` (action), ``outcome`` (rotation outcome, when
there is one), ``cs1`` record uid, ``cs2`` hash, ``cs3`` prev_hash, ``cs4`` details (canonical JSON),
then, when shipped with a head, ``cn1`` head id and ``cs5`` head hash, each with its label.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from keyturn.audit.sinks.base import AuditEvent

Format = Literal["jsonl", "cef"]
CEF_VENDOR = "keyturn"
CEF_PRODUCT = "keyturn"
CEF_VERSION = "0.1.0"


@dataclass(frozen=True)
class Severity:
    syslog: int  # RFC 5424: 3 error, 4 warning, 5 notice, 6 informational
    cef: int  # 0 (low) .. 10 (very high)


INFO = Severity(6, 3)
NOTICE = Severity(5, 5)
WARNING = Severity(4, 7)
ERROR = Severity(3, 9)

# Most specific first: (action or action prefix ending in ".", severity, CEF name).
ACTIONS: tuple[tuple[str, Severity, str], ...] = (
    ("reveal", NOTICE, "Secret revealed"),
    ("auth.denied", WARNING, "Request denied"),
    ("api.denied", WARNING, "Request denied"),
    ("vault.init", NOTICE, "Vault created"),
    ("vault.rekey.", NOTICE, "Master key rotation"),
    ("record.remove", NOTICE, "Record removed"),
    ("record.export", NOTICE, "Records exported"),
    ("record.import", NOTICE, "Records imported"),
    ("record.", INFO, "Record changed"),
    ("audit.export", NOTICE, "Audit log exported"),
    ("version.", INFO, "Secret version changed"),
    ("rotation.audit", INFO, "Rotation finished"),
    ("rotation.recover", NOTICE, "Rotation recovered"),
    ("rotation.profile_set", INFO, "Rotation profile set"),
    ("rotation.", INFO, "Rotation step"),
)

# A finished rotation's severity follows its outcome (DESIGN §3 outcomes).
OUTCOMES: dict[str, Severity] = {
    "rotated": INFO,
    "rotated_unverifiable": NOTICE,
    "rotated_script_errors": WARNING,
    "unverified": WARNING,
    "rolled_back": WARNING,
    "failed": WARNING,
    "needs_attention": ERROR,
}


def _classify(action: str) -> tuple[Severity, str]:
    for key, sev, name in ACTIONS:
        if action == key or (key.endswith(".") and action.startswith(key)):
            return sev, name
    return INFO, action


def severity(event: AuditEvent) -> Severity:
    sev, _ = _classify(event.action)
    outcome = event.details.get("outcome")
    if isinstance(outcome, str) and outcome in OUTCOMES:
        return OUTCOMES[outcome]
    if event.details.get("status") == "failed":  # a failed rotation step
        return WARNING
    return sev


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_dict(event: AuditEvent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": event.id, "ts": event.ts.isoformat(timespec="microseconds"), "actor": event.actor,
        "action": event.action, "record_uid": event.record_uid, "details": event.details,
        "prev_hash": event.prev_hash, "hash": event.hash,
    }
    if event.head_id is not None:
        out["head"] = {"id": event.head_id, "hash": event.head_hash}
    return out


def render_jsonl(event: AuditEvent) -> str:
    """One JSON object, no trailing newline."""
    return canonical_json(event_dict(event))


def cef_header(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def cef_value(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("=", "\\=")
            .replace("\r\n", "\\n").replace("\r", "\\r").replace("\n", "\\n"))


def render_cef(event: AuditEvent) -> str:
    """One CEF line, no trailing newline."""
    _, name = _classify(event.action)
    ext: list[tuple[str, str]] = [
        ("rt", str(int(event.ts.timestamp()) * 1000 + event.ts.microsecond // 1000)),
        ("externalId", str(event.id)),
        ("suser", event.actor),
        ("act", event.action),
    ]
    outcome = event.details.get("outcome")
    if isinstance(outcome, str):
        ext.append(("outcome", outcome))
    if event.record_uid is not None:
        ext += [("cs1Label", "record"), ("cs1", event.record_uid)]
    ext += [("cs2Label", "hash"), ("cs2", event.hash), ("cs3Label", "prev_hash"), ("cs3", event.prev_hash),
            ("cs4Label", "details"), ("cs4", canonical_json(event.details))]
    if event.head_id is not None and event.head_hash is not None:
        ext += [("cn1Label", "head_id"), ("cn1", str(event.head_id)), ("cs5Label", "head_hash"),
                ("cs5", event.head_hash)]
    header = "|".join(cef_header(h) for h in (
        CEF_VENDOR, CEF_PRODUCT, CEF_VERSION, event.action, name, str(severity(event).cef),
    ))
    return f"CEF:0|{header}|" + " ".join(f"{k}={cef_value(v)}" for k, v in ext)


RENDERERS: dict[str, Callable[[AuditEvent], str]] = {"jsonl": render_jsonl, "cef": render_cef}


def render(event: AuditEvent, fmt: str) -> str:
    return RENDERERS[fmt](event)
