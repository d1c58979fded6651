"""A tiny JSON-schema subset validator and the merakiAuthUser extract it checks (used by other sim tests)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from keyturn.sim.meraki_state import MerakiState

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "meraki_authuser_schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}


def _errors(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _errors(value, SCHEMA["definitions"][name], where)
    if "anyOf" in schema:
        options = [_errors(value, s, where) for s in schema["anyOf"]]
        return [] if any(not o for o in options) else [f"{where}: matches no alternative ({options})"]
    out: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(value, _TYPES[kind]) and not (kind == "integer" and isinstance(value, bool))
        if not ok:
            return [*out, f"{where}: expected {kind}, got {type(value).__name__}"]
    if schema.get("format") == "date-time":
        try:
            datetime.fromisoformat(value)
        except (TypeError, ValueError):
            out.append(f"{where}: {value!r} is not a date-time")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            out += [f"{where}: unexpected {k}" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                out += _errors(v, props[k], f"{where}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += _errors(item, schema["items"], f"{where}[{i}]")
    return out


def schema_errors(value: Any, definition: str) -> list[str]:
    """Violations of `definitions/<definition>` by `value` (empty list = valid)."""
    return _errors(value, SCHEMA["definitions"][definition], definition)


SPEC_EXAMPLE = {
    "id": "aGlAaGkuY29t", "email": "miles@meraki.com", "name": "Miles Meraki",
    "createdAt": "2018-02-11T00:00:00.090210Z", "accountType": "802.1X", "isAdmin": False,
    "authorizations": [{"ssidNumber": 1, "authorizedZone": "Store WiFi",
                        "expiresAt": "2018-03-13T00:00:00.090210Z", "authorizedByName": "Miles Meraki",
                        "authorizedByEmail": "miles@meraki.com"}],
}


def test_spec_example_is_valid() -> None:
    assert schema_errors(SPEC_EXAMPLE, "merakiAuthUser") == []


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda u: u.pop("isAdmin"), "missing isAdmin"),
    (lambda u: u.update(password="x"), "unexpected password"),
    (lambda u: u.update(accountType="Admin"), "not in"),
    (lambda u: u.update(isAdmin="no"), "expected boolean"),
    (lambda u: u["authorizations"][0].update(expiresAt="soon"), "matches no alternative"),
    (lambda u: u["authorizations"][0].update(ssidNumber=True), "expected integer"),
])
def test_validator_catches_shape_errors(mutate: Any, expected: str) -> None:
    user = json.loads(json.dumps(SPEC_EXAMPLE))
    mutate(user)
    errors = schema_errors(user, "merakiAuthUser")
    assert any(expected in e for e in errors), errors


def test_state_renders_every_account_type_in_schema_shape() -> None:
    state = MerakiState(seed=3)
    org = state.add_org("Lab")
    net = state.add_network(org.id, "Branch")
    who = state.authenticate(state.add_api_key())
    assert who is not None
    state.add_auth_user(net.id, "vpn@example.com", "pw-1")
    state.add_auth_user(net.id, "dot1x@example.com", "pw-2", account_type="802.1X")
    state.add_auth_user(net.id, "guest@example.com", "pw-3", account_type="Guest")
    state.add_auth_user(net.id, "admin@example.com", "pw-4", is_admin=True)
    users = state.list_auth_users(net.id, who)
    assert len(users) == 4
    assert schema_errors(users, "merakiAuthUsers") == []
    assert all("password" not in json.dumps(u).lower() for u in users)
