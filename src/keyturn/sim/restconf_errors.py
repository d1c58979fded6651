"""RESTCONF error answers of the simulated IOS XE device (RFC 8040 §7, two release shapes).

`RestconfError` is raised anywhere inside request handling and turned into one HTTP answer at the
front-end's boundary by `error_body()`. The status comes from the RFC 8040 §7 error-tag table unless
the caller names another allowed one (e.g. `invalid-value` → 404 "uri keypath not found").

Shapes, as seen on real devices (reference cisco-iosxe.md §2.3):

* ``"ietf"``   — IOS XE 17.12+: ``{"ietf-restconf:errors": {"error": [{"error-type": ..., ...}]}}``
* ``"legacy"`` — older releases: bare ``{"errors": {"error": [...]}}`` with keys in alphabetical order.

Messages never carry a submitted value (a password could be in it), only paths and names.
"""

from __future__ import annotations

from typing import Any, Literal

from keyturn.errors import SimulatorError

ErrorsShape = Literal["ietf", "legacy"]

# RFC 8040 §7: error-tag → default HTTP status.
STATUS_OF_TAG: dict[str, int] = {
    "in-use": 409,
    "invalid-value": 400,
    "too-big": 413,
    "missing-attribute": 400,
    "bad-attribute": 400,
    "unknown-attribute": 400,
    "bad-element": 400,
    "unknown-element": 400,
    "unknown-namespace": 400,
    "access-denied": 401,
    "lock-denied": 409,
    "resource-denied": 409,
    "rollback-failed": 500,
    "data-exists": 409,
    "data-missing": 409,
    "operation-not-supported": 405,
    "operation-failed": 500,
    "partial-operation": 500,
    "malformed-message": 400,
}

# The generic IOS XE text when the IOS parser refuses the CLI a RESTCONF edit was translated into.
DEVICE_REFUSED = "inconsistent value: Device refused one or more commands"
KEYPATH_NOT_FOUND = "uri keypath not found"


class RestconfError(SimulatorError):
    """One RESTCONF error answer; `str()` is the error-message (safe to log, no values)."""

    def __init__(
        self,
        tag: str,
        message: str,
        *,
        status: int | None = None,
        path: str | None = None,
        error_type: str = "application",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message
        self.status = status if status is not None else STATUS_OF_TAG[tag]
        self.path = path
        self.error_type = error_type
        self.headers = headers or {}


def error_body(err: RestconfError, shape: ErrorsShape) -> dict[str, Any]:
    """The JSON document for `err` in the given release shape."""
    if shape == "legacy":
        entry: dict[str, str] = {"error-message": err.message}
        if err.path:
            entry["error-path"] = err.path
        entry["error-tag"] = err.tag
        entry["error-type"] = err.error_type
        return {"errors": {"error": [entry]}}
    entry = {"error-type": err.error_type, "error-tag": err.tag}
    if err.path:
        entry["error-path"] = err.path
    entry["error-message"] = err.message
    return {"ietf-restconf:errors": {"error": [entry]}}
