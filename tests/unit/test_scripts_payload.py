"""Payload and flattening rules of the Keeper post-rotation script protocol (in-memory records)."""

from __future__ import annotations

import base64
import json
from typing import Any

from keyturn.scripts.payload import (
    PAYLOAD_KEYS,
    build_payload,
    flatten_record,
    login_of,
    password_key,
    secret_values,
)
from keyturn.secret import Secret
from tests.script_records import F, R


def _decode(payload: bytes) -> dict[str, Any]:
    assert payload.endswith(b"\n") and payload.count(b"\n") == 1
    return json.loads(base64.b64decode(payload[:-1], validate=True))


def test_flatten_scalar_list_object_empty_and_repeats() -> None:
    rec = R(
        uid="U1", title="Router 1",
        fields=[
            F("login", value=["admin"]),
            F("password", value=[Secret("pw-old")]),
            F("host", value=[{"hostName": "10.0.0.1", "port": "443"}]),
            F("url", value=[]),
            F("text", label="ips", value=["10.0.0.1", "10.0.0.2"]),
            F("email", value=[""]),
        ],
        custom=[
            F("text", label="host_endpoint", value=["10.0.0.1"]),
            F("text", label="host_endpoint", value=["10.0.0.2"]),
            F("text", label="host_endpoint", value=["10.0.0.3"]),
            F("text", label="title", value=["not the title"]),
            F("text", label="NOOP", value=["True"]),
            F("script", value=["/x.sh"]),
        ],
        meta={"scripts": [{"script": "/x.sh"}]},
    )
    flat = flatten_record(rec)
    assert flat == {
        "uid": "U1",
        "title": "Router 1",
        "login": "admin",
        "password": "pw-old",
        "host": {"hostName": "10.0.0.1", "port": "443"},
        "ips": ["10.0.0.1", "10.0.0.2"],
        "host_endpoint": "10.0.0.1",
        "host_endpoint2": "10.0.0.2",
        "host_endpoint3": "10.0.0.3",
        "title2": "not the title",
        "NOOP": "True",
    }
    assert list(flat)[:2] == ["uid", "title"]
    assert "scripts" not in json.dumps(flat)


def test_overrides_replace_and_add() -> None:
    rec = R(uid="U", title="T", fields=[F("password", value=[Secret("old")])])
    assert flatten_record(rec, overrides={"password": "new", "extra": "x"})["password"] == "new"
    assert flatten_record(rec, overrides={"extra": "x"})["extra"] == "x"


def test_password_key_follows_label_and_collisions() -> None:
    assert password_key(R(uid="u", title="t")) == "password"
    assert password_key(R(uid="u", title="t", fields=[F("password", label="Secret")])) == "Secret"
    rec = R(uid="u", title="t", fields=[F("text", label="password", value=["x"]), F("password", value=["y"])])
    assert password_key(rec) == "password2"


def test_login_of_prefers_login_then_email() -> None:
    both = [F("email", value=["a@b.c"]), F("login", value=["bob"])]
    assert login_of(R(uid="u", title="t", fields=both)) == "bob"
    assert login_of(R(uid="u", title="t", fields=[F("email", value=["a@b.c"])])) == "a@b.c"
    assert login_of(R(uid="u", title="t")) == ""


def test_secret_values_finds_wrapped_and_typed() -> None:
    rec = R(
        uid="u", title="t",
        fields=[F("password", value=["plain-typed"]), F("login", value=["notsecret"])],
        custom=[F("text", label="api", value=[Secret("wrapped")])],
    )
    assert sorted(s.reveal() for s in secret_values(rec)) == ["plain-typed", "wrapped"]


def test_build_payload_keys_order_and_double_encoding() -> None:
    provider = R(uid="P", title="PAM Configuration", type="pamConfiguration")
    resource = R(uid="RS", title="Router", custom=[F("text", label="host_endpoint", value=["r1"])])
    extra = [R(uid="X1", title="Cisco Authentication Record",
               fields=[F("password", value=[Secret("apikey")])])]
    user = R(uid="US", title="dev user",
             fields=[F("login", value=["developer"]), F("password", value=[Secret("old")])])
    payload = build_payload(
        provider=provider, resource=resource, user=user, extra=extra,
        new_password=Secret("n3w\"pw é"), old_password=Secret("old"), user_login="developer",
    )
    obj = _decode(payload)
    assert tuple(obj) == PAYLOAD_KEYS
    assert obj["providerRecordUid"] == "P"
    assert obj["resourceRecordUid"] == "RS"
    assert obj["userRecordUid"] == "US"
    assert obj["newPassword"] == "n3w\"pw é"
    assert obj["oldPassword"] == "old"
    assert obj["user"] == "developer"
    assert isinstance(obj["records"], str)
    records = json.loads(base64.b64decode(obj["records"], validate=True))
    assert [r["uid"] for r in records] == ["P", "RS", "X1", "US"]
    assert records[2]["password"] == "apikey"
    assert records[3]["password"] == "n3w\"pw é"  # the user record shows the new password


def test_build_payload_without_resource_and_first_rotation() -> None:
    provider = R(uid="P", title="cfg")
    user = R(uid="US", title="u")
    obj = _decode(build_payload(
        provider=provider, resource=None, user=user, extra=[],
        new_password=Secret("n"), old_password=None, user_login="",
    ))
    assert obj["resourceRecordUid"] == ""
    assert obj["oldPassword"] == ""
    records = json.loads(base64.b64decode(obj["records"]))
    assert [r["uid"] for r in records] == ["P", "US"]
    # standard alphabet with padding, not wrapped
    assert b"-" not in build_payload(
        provider=provider, resource=None, user=user, extra=[],
        new_password=Secret("\xff\xfe>>>???"), old_password=None, user_login="",
    )


def test_is_noop_any_case_custom_field_only() -> None:
    from keyturn.scripts.payload import is_noop

    assert is_noop(R(uid="u", title="t", custom=[F("text", label="NOOP", value=["tRuE"])]))
    assert not is_noop(R(uid="u", title="t", custom=[F("text", label="NOOP", value=["false"])]))
    assert not is_noop(R(uid="u", title="t", custom=[F("text", label="noop", value=["True"])]))
    assert not is_noop(R(uid="u", title="t"))
