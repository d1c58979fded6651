"""The API role matrix: every route and every role (admin, operator, auditor, consumer, anonymous) → the
exact status. The table is the authorisation policy as a user sees it; a route missing from it fails the
test, so a new route cannot ship without a decision here.

Allowed calls are built to succeed (a real rotation id, a record with an earlier version to restore),
so "allowed" means the success status, not merely "not 401/403". The consumer's token is granted the
user record {u} (``record:UID``) and nothing else: it reveals {u} and is refused everything else.
"""

from __future__ import annotations

from typing import Any

import pytest

from keyturn.api.tokens import Role, TokenStore
from keyturn.secret import Secret
from keyturn.vault import Field
from tests.unit.api_world import Api

ROLES = ("admin", "operator", "auditor", "consumer", "anonymous")
A, O, U, C, N = ROLES  # noqa: E741 - one letter per role keeps the table readable


def expect(ok: int, *allowed: str) -> dict[str, int]:
    """`ok` for the allowed roles, 403 for the other token holders, 401 without a token."""
    return {role: ok if role in allowed else 401 if role == N else 403 for role in ROLES}


PUBLIC = dict.fromkeys(ROLES, 200)

# (method, path, body, expected status per role). {u}: a user with a profile; {p}: a user to set a
# profile on; {r}: the user's rotation; {v}: a record with an earlier version; {x}: a record to delete.
MATRIX: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("GET", "/healthz", None, PUBLIC),
    ("GET", "/readyz", None, PUBLIC),
    ("GET", "/metrics", None, PUBLIC),
    ("GET", "/openapi.json", None, PUBLIC),
    ("GET", "/docs", None, PUBLIC),
    ("GET", "/docs/assets/swagger-ui-bundle.js", None, PUBLIC),
    ("GET", "/docs/assets/swagger-ui.css", None, PUBLIC),
    ("GET", "/", None, dict.fromkeys(ROLES, 307)),   # to the web console, which signs in on its own
    ("GET", "/records", None, expect(200, A, O, U)),
    ("POST", "/records", {"type": "login", "title": "matrix-new-{role}"}, expect(201, A)),
    ("GET", "/records/{u}", None, expect(200, A, O, U)),
    ("PATCH", "/records/{u}", {"title": "u1"}, expect(200, A)),
    ("DELETE", "/records/{x}", None, expect(204, A)),
    ("POST", "/records/{u}/reveal", None, expect(200, A, C)),
    ("POST", "/records/{v}/restore", {"version": 1}, expect(200, A)),
    ("GET", "/records/{u}/rotation", None, expect(200, A, O, U)),
    ("PUT", "/records/{p}/rotation", {"target": "iosxe-restconf", "resource": "{res}"}, expect(200, A, O)),
    ("GET", "/records/{u}/history", None, expect(200, A, O, U)),
    ("GET", "/records/{u}/schedule", None, expect(200, A, O, U)),
    ("PUT", "/records/{u}/schedule", {"spec": "every 30d"}, expect(200, A, O)),
    ("DELETE", "/records/{u}/schedule", None, expect(204, A, O)),
    ("POST", "/rotations", {"records": ["{u}"]}, expect(202, A, O)),
    ("GET", "/rotations", None, expect(200, A, O, U)),
    ("GET", "/rotations/{r}", None, expect(200, A, O, U)),
    ("GET", "/accounts", None, expect(200, A, O, U)),
    ("GET", "/audit", None, expect(200, A, U)),
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, uid in names.items():
            value = value.replace("{" + key + "}", uid)
        return value
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def test_the_matrix_covers_every_route(api: Api) -> None:
    served = {(method.upper(), path) for path, ops in api.app.openapi()["paths"].items() for method in ops}
    served |= {(method, route.path) for route in api.app.routes   # the ones outside the schema
               for method in getattr(route, "methods", None) or () if method != "HEAD"}
    table = {(method, path.replace("{x}", "{ref}").replace("{v}", "{ref}").replace("{p}", "{ref}")
              .replace("{u}", "{ref}").replace("{r}", "{rotation_id}")) for method, path, _, _ in MATRIX}
    assert served == table


@pytest.mark.parametrize("role", ROLES)
async def test_every_route_answers_each_role_as_the_table_says(api: Api, role: str) -> None:
    world = api.world
    first = await api.client.post("/rotations", json={"records": [world.user]}, headers=api.auth("admin"))
    rotation = first.json()["rotations"][0]["id"]
    await api.wait_rotation(rotation)
    versioned = world.vault.add(type="pamUser", title=f"versioned-{role}", fields=[
        Field("login", value=["v"]), Field("password", value=[Secret("First-Passw0rd-1")])])
    world.vault.update(versioned.uid, fields=[Field("login", value=["v"]),
                                              Field("password", value=[Secret("Second-Passw0rd-2")])])
    names = {"u": world.user, "p": world.add_user(f"profile-{role}", "p", "Prof1le-Passw0rd"),
             "x": world.vault.add(type="login", title=f"victim-{role}").uid, "v": versioned.uid,
             "r": rotation, "res": world.resource.uid, "role": role}
    if role == C:  # granted the user record only
        consumer = TokenStore(world.vault.engine).create(Role.CONSUMER, name="matrix-consumer",
                                                         grants=[f"record:{world.user}"])[1]
        headers = {"Authorization": f"Bearer {consumer.reveal()}"}
    else:
        headers = api.auth(role) if role != N else {}
    got = {}
    for method, path, body, expected in MATRIX:
        r = await api.client.request(method, _fill(path, names), json=_fill(body, names), headers=headers)
        got[(method, path)] = r.status_code
        assert r.status_code == expected[role], (role, method, path, r.status_code, r.text[:300])
        assert r.headers["x-content-type-options"] == "nosniff"
        if r.status_code == 403:
            assert "lacks permission" in r.json()["detail"]
        if r.status_code == 401:
            assert r.headers["www-authenticate"] == "Bearer"
    if role == N:   # `/` only redirects to the console's own sign-in
        assert {code for (_m, path), code in got.items() if path != "/"} == {200, 401}
