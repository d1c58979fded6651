"""Validate RFC 7951 JSON documents against the real Cisco IOS XE 17.18.1 YANG model (test helper).

The model (7 modules + 11 `Cisco-IOS-XE-native` submodules, listed in the folder's
`yang-library.json`) is loaded with yangson once per process (~5-10 s) by `load_validator()`; tests
get it through a session-scoped fixture:

    @pytest.fixture(scope="session")
    def yang() -> YangValidator:
        return load_validator()          # skips the test if the YANG folder is absent

    yang.validate(doc)         # AssertionError naming the offending node if the model rejects it
    yang.assert_invalid(doc)   # the real model must reject it too (cross-checks simulator strictness)

`validate` understands the documents a RESTCONF server exchanges for our resources:
`{"Cisco-IOS-XE-native:native": {...}}`, `{"Cisco-IOS-XE-native:username": [...]}` (validated
wrapped in `native`), `{"cisco-ia:output": {...}}` (the save-config RPC output) and RESTCONF error
bodies (`ietf-restconf:errors` or the legacy bare `errors`), the API root and the capability list —
the last three checked by hand against `ietf-restconf`/`ietf-restconf-monitoring`, which are not in
the folder.

The folder is `$KEYTURN_YANG_DIR`, else `../shared/yang/cisco-xe-17.18.1` next to the repository.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_YANG_DIR = REPO_ROOT.parent / "shared" / "yang" / "cisco-xe-17.18.1"

NATIVE = "Cisco-IOS-XE-native:native"
USERNAME = "Cisco-IOS-XE-native:username"
SAVE_OUTPUT = "cisco-ia:output"
ERROR_TYPES = {"transport", "rpc", "protocol", "application"}
ERROR_MEMBERS = {"error-type", "error-tag", "error-app-tag", "error-path", "error-message", "error-info"}


def yang_dir() -> Path:
    env = os.environ.get("KEYTURN_YANG_DIR")
    return Path(env) if env else DEFAULT_YANG_DIR


@functools.cache
def _data_model(folder: str) -> Any:
    from yangson import DataModel

    library = (Path(folder) / "yang-library.json").read_text()
    return DataModel(library, [folder])


class YangValidator:
    def __init__(self, model: Any) -> None:
        self.model = model

    def _check(self, doc: dict[str, Any]) -> None:
        """Raise the yangson error (or ValueError) if `doc` is not valid; the strict core of validate()."""
        from yangson.enumerations import ContentType

        if not isinstance(doc, dict) or len(doc) != 1:
            raise ValueError("expected a JSON object with one top-level member")
        (top, value), = doc.items()
        if top in ("ietf-restconf:errors", "errors"):
            _check_errors(value)
        elif top in _HAND_CHECKED:
            _HAND_CHECKED[top](value)
        elif top == SAVE_OUTPUT:
            self.model.from_raw(doc, subschema="cisco-ia:save-config").validate(ctype=ContentType.all)
        elif top == USERNAME:
            self.model.from_raw({NATIVE: {"username": value}}).validate(ctype=ContentType.config)
        elif top == NATIVE:
            self.model.from_raw(doc).validate(ctype=ContentType.config)
        else:
            raise ValueError(f"no schema for top-level member {top!r}")

    def validate(self, doc: Any) -> None:
        try:
            self._check(doc)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise AssertionError(f"not valid against IOS XE 17.18.1 YANG: {reason}") from exc

    def assert_invalid(self, doc: Any) -> str:
        """Assert the real model rejects `doc`; returns yangson's reason (for cross-checking)."""
        try:
            self._check(doc)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        raise AssertionError("the IOS XE YANG model accepts this document")


def _check_errors(value: Any) -> None:
    if not isinstance(value, dict) or set(value) != {"error"} or not isinstance(value["error"], list):
        raise ValueError("errors must be {'error': [...]}")
    for entry in value["error"]:
        if not isinstance(entry, dict) or set(entry) - ERROR_MEMBERS:
            raise ValueError(f"unknown members in error entry: {entry!r}")
        if entry.get("error-type") not in ERROR_TYPES or not isinstance(entry.get("error-tag"), str):
            raise ValueError("error-type and error-tag are mandatory")
        for key in ("error-app-tag", "error-path", "error-message"):
            if key in entry and not isinstance(entry[key], str):
                raise ValueError(f"{key} must be a string")


def _check_restconf_root(value: Any) -> None:
    # ietf-restconf@2017-01-26 container restconf {data, operations, leaf yang-library-version}.
    if not isinstance(value, dict) or set(value) != {"data", "operations", "yang-library-version"}:
        raise ValueError("restconf root must hold data, operations and yang-library-version")
    if not isinstance(value["data"], dict) or not isinstance(value["operations"], dict):
        raise ValueError("data and operations are containers")
    if not isinstance(value["yang-library-version"], str):
        raise ValueError("yang-library-version is a string")


def _check_capabilities(value: Any) -> None:
    # ietf-restconf-monitoring@2017-01-26 capabilities {leaf-list capability (inet:uri)}.
    if not isinstance(value, dict) or set(value) != {"capability"}:
        raise ValueError("capabilities must hold only capability")
    if not all(isinstance(c, str) and ":" in c for c in value["capability"]):
        raise ValueError("capability is a leaf-list of URIs")


# Modules not in the 17.18.1 folder, checked against their (small) YANG definitions by hand.
_HAND_CHECKED = {
    "ietf-restconf:restconf": _check_restconf_root,
    "ietf-restconf-monitoring:capabilities": _check_capabilities,
}


def load_validator() -> YangValidator:
    """The process-wide validator; skips the calling test when the YANG folder is missing."""
    folder = yang_dir()
    if not (folder / "yang-library.json").is_file():
        pytest.skip(f"IOS XE YANG test data not found in {folder} (set KEYTURN_YANG_DIR)")
    return YangValidator(_data_model(str(folder)))
