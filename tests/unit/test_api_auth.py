"""Authentication and the role matrix: 401 for every bad token, 403 per role, every denial audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyturn.api.auth import ROLE_PERMISSIONS, Permission
from keyturn.api.tokens import Role, TokenStore, parse_duration
from keyturn.errors import ConfigError
from tests.unit.api_world import Api

# Every protected operation, with the permission it needs and a body that would pass validation.
OPS: list[tuple[str, str, Permission, dict | None]] = [
    ("GET", "/records", Permission.RECORDS_READ, None),
    ("POST", "/records", Permission.RECORDS_WRITE, {"type": "login", "title": "matrix-new"}),
    ("GET", "/records/{u}", Permission.RECORDS_READ, None),
    ("PATCH", "/records/{u}", Permission.RECORDS_WRITE, {"title": "u1"}),
    ("DELETE", "/records/{other}", Permission.RECORDS_WRITE, None),
    ("POST", "/records/{u}/reveal", Permission.REVEAL, None),
    ("GET", "/records/{u}/rotation", Permission.ROTATION_READ, None),
    ("PUT", "/records/{u}/rotation", Permission.ROTATION_WRITE, {"target": "noop"}),
    ("GET", "/records/{u}/history", Permission.ROTATION_READ, None),
    ("POST", "/rotations", Permission.ROTATE, {"records": ["{u}"]}),
    ("GET", "/rotations/abc", Permission.ROTATION_READ, None),
    ("GET", "/audit", Permission.AUDIT_READ, None),
]


def _fill(text: str, api: Api, other: str) -> str:
    return text.replace("{u}", api.world.user).replace("{other}", other)


async def test_role_matrix_403_exactly_where_the_table_says(api: Api) -> None:
    denied_before = len(api.world.vault.audit.list(action="api.denied"))
    expected_denials = 0
    for role in Role:
        other = api.world.vault.add(type="login", title=f"victim-{role}").uid
        for method, path, perm, body in OPS:
            url = _fill(path, api, other)
            json = {k: ([_fill(x, api, other) for x in v] if isinstance(v, list) else v)
                    for k, v in body.items()} if body else None
            r = await api.client.request(method, url, json=json, headers=api.auth(role.value))
            allowed = perm in ROLE_PERMISSIONS[role]
            if allowed:
                assert r.status_code not in (401, 403), (role, method, path, r.status_code, r.text)
            else:
                expected_denials += 1
                assert r.status_code == 403, (role, method, path, r.status_code, r.text)
                # A consumer may call reveal; this one has no grants, so it learns only that (see
                # tests/security/test_consumer_grants.py).
                reason = ("this token has no grant for that record"
                          if role is Role.CONSUMER and path.endswith("/reveal") else "lacks permission")
                assert reason in r.json()["detail"]
    denied = api.world.vault.audit.list(action="api.denied")
    assert len(denied) - denied_before == expected_denials
    assert all(e.details["status"] == 403 for e in denied[:expected_denials])
    # Operators rotate but never read secrets or write records; auditors change nothing.
    assert Permission.REVEAL not in ROLE_PERMISSIONS[Role.OPERATOR]
    assert Permission.RECORDS_WRITE not in ROLE_PERMISSIONS[Role.OPERATOR]
    assert ROLE_PERMISSIONS[Role.AUDITOR] == {Permission.RECORDS_READ, Permission.ROTATION_READ,
                                               Permission.AUDIT_READ}


async def test_missing_malformed_unknown_revoked_expired_tokens_get_401(api: Api) -> None:
    store = TokenStore(api.world.vault.engine)
    past = datetime.now(UTC) - timedelta(days=2)
    _, expired = store.create(Role.ADMIN, name="old", expires_in=timedelta(days=1), now=past)
    info, revoked = store.create(Role.ADMIN, name="gone")
    store.revoke(info.id)
    cases = {
        "missing": {},
        "basic scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "empty": {"Authorization": "Bearer "},
        "unknown": {"Authorization": "Bearer kt_" + "A" * 43},
        "no prefix": {"Authorization": "Bearer " + api.tokens["admin"][3:]},
        "revoked": {"Authorization": f"Bearer {revoked.reveal()}"},
        "expired": {"Authorization": f"Bearer {expired.reveal()}"},
    }
    before = len(api.world.vault.audit.list(action="api.denied"))
    for name, headers in cases.items():
        r = await api.client.get("/records", headers=headers)
        assert r.status_code == 401, name
        assert r.headers["www-authenticate"] == "Bearer", name
    denied = api.world.vault.audit.list(action="api.denied")
    assert len(denied) - before == len(cases)
    reasons = {e.details["reason"] for e in denied[: len(cases)]}
    assert {"revoked token", "expired token", "unknown token", "missing bearer token"} <= reasons
    for e in denied:
        for token in (revoked.reveal(), expired.reveal(), api.tokens["admin"]):
            assert token not in str(e.details) and token not in e.actor


def test_token_store_hashes_lists_and_revokes(world) -> None:
    store = TokenStore(world.vault.engine)
    info, token = store.create("operator", name="ci bot", expires_in=parse_duration("90d"))
    assert token.reveal().startswith("kt_") and len(token.reveal()) >= 40
    assert store.authenticate(token.reveal()).id == info.id
    with world.vault.engine.connect() as conn:
        import sqlalchemy as sa
        stored = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM api_tokens")) for v in row)
    assert token.reveal() not in stored and token.reveal()[3:] not in stored
    assert [t.name for t in store.list()] == ["ci bot"]
    assert info.expires_at is not None and (info.expires_at - info.created_at) == timedelta(days=90)
    assert store.revoke("ci bot").revoked_at is not None
    assert store.authenticate(token.reveal()) is None
    with pytest.raises(ConfigError, match="unknown role"):
        store.create("root", name="x")
    with pytest.raises(ConfigError, match="bad duration"):
        parse_duration("forever")
