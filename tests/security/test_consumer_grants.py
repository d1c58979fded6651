"""Consumer tokens (issue 16, item 1): a token reveals the records its grants match and nothing else.

A record outside the grants and a record that does not exist get the same 403 — status, body and
headers — so a consumer cannot probe for records; every refusal and every reveal is audited with the
token's name.
"""

from __future__ import annotations

from typing import Any

import httpx

from keyturn.api.tokens import Role, TokenStore
from keyturn.secret import Secret
from keyturn.vault import Field
from tests.unit.api_world import Api

BACKUP_PW = "Backup-Passw0rd-Granted-1"
OTHER_PW = "Other-Passw0rd-Hidden-2"


def _consumer(api: Api, *grants: str, name: str = "oxidized") -> dict[str, str]:
    token = TokenStore(api.world.vault.engine).create(Role.CONSUMER, name=name, grants=list(grants))[1]
    return {"Authorization": f"Bearer {token.reveal()}"}


def _add(api: Api, title: str, password: str, *, tags: list[str] | None = None, **custom: str) -> str:
    rec = api.world.vault.add(
        type="pamUser", title=title, meta={"tags": tags} if tags else None,
        fields=[Field("login", value=[f"{title}-login"]), Field("password", value=[Secret(password)])],
        custom=[Field("text", label, [value]) for label, value in custom.items()])
    return rec.uid


def _shape(r: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    headers = {k: v for k, v in r.headers.items() if k not in ("date", "x-request-id")}
    return r.status_code, r.json(), headers


async def test_a_tag_grant_reveals_tagged_records_only(api: Api) -> None:
    tagged = _add(api, "sw1 backup", BACKUP_PW, tags=["backup"], site_code="b2")
    other = _add(api, "sw2 admin", OTHER_PW, tags=["core"])
    auth = _consumer(api, "tag:backup")

    r = await api.client.post(f"/records/{tagged}/reveal", headers=auth)
    assert r.status_code == 200 and r.json()["value"] == BACKUP_PW
    assert r.headers["cache-control"] == "no-store"
    by_title = await api.client.post("/records/sw1 backup/reveal", json={"field": "login"}, headers=auth)
    assert by_title.json() == {"uid": tagged, "field": "login", "value": "sw1 backup-login", "version": None}
    custom = await api.client.post(f"/records/{tagged}/reveal", json={"field": "site_code"}, headers=auth)
    assert custom.json()["value"] == "b2"

    denied = await api.client.post(f"/records/{other}/reveal", headers=auth)
    assert denied.status_code == 403 and OTHER_PW not in denied.text

    # Tagging the record later grants it; untagging takes it back.
    patched = await api.client.patch(f"/records/{other}", json={"tags": ["backup", "core"]},
                                     headers=api.auth("admin"))
    assert patched.status_code == 200 and patched.json()["meta"]["tags"] == ["backup", "core"]
    assert (await api.client.post(f"/records/{other}/reveal", headers=auth)).json()["value"] == OTHER_PW
    await api.client.patch(f"/records/{other}", json={"tags": []}, headers=api.auth("admin"))
    assert (await api.client.post(f"/records/{other}/reveal", headers=auth)).status_code == 403


async def test_missing_and_ungranted_records_get_the_same_answer(api: Api) -> None:
    granted = _add(api, "granted one", BACKUP_PW)
    ungranted = _add(api, "not granted", OTHER_PW)
    _add(api, "twin", OTHER_PW)
    api.world.vault.add(type="pamUser", title="twin", allow_duplicate=True)   # an ambiguous title
    auth = _consumer(api, f"record:{granted}")
    answers = [await api.client.post(f"/records/{ref}/reveal", headers=auth)
               for ref in (ungranted, "not granted", "no-such-record", "0" * 22, "twin")]
    assert len({repr(_shape(r)) for r in answers}) == 1
    assert _shape(answers[0])[:2] == (403, {"detail": "this token has no grant for that record"})
    # An admin gets the usual answers for the same refs: the consumer's sameness is deliberate.
    admin = [await api.client.post(f"/records/{ref}/reveal", headers=api.auth("admin"))
             for ref in (ungranted, "no-such-record", "twin")]
    assert [r.status_code for r in admin] == [200, 404, 409]
    login = await api.client.post(f"/records/{ungranted}/reveal", json={"field": "login"},
                                  headers=api.auth("admin"))
    assert login.json()["value"] == "not granted-login"      # plain fields for an admin too


async def test_refusals_and_reveals_are_audited_with_the_token_name(api: Api) -> None:
    granted = _add(api, "audited", BACKUP_PW, tags=["backup"])
    auth = _consumer(api, "tag:backup", name="rancid-backups")
    assert (await api.client.post(f"/records/{granted}/reveal", headers=auth)).status_code == 200
    assert (await api.client.post("/records/ghost/reveal", headers=auth)).status_code == 403

    reveal = api.world.vault.audit.list(action="reveal", record_uid=granted)[0]
    assert reveal.actor.startswith("api:rancid-backups#")
    assert reveal.details["field"] == "password"
    denied = api.world.vault.audit.list(action="api.denied")[0]
    assert denied.actor.startswith("api:rancid-backups#")
    assert denied.details["token_name"] == "rancid-backups" and denied.details["role"] == "consumer"
    assert denied.details["status"] == 403 and denied.details["path"] == "/records/ghost/reveal"
    assert BACKUP_PW not in repr([e.details for e in api.world.vault.audit.list()])


async def test_a_consumer_reads_current_values_only_and_nothing_else(api: Api) -> None:
    uid = api.world.user
    auth = _consumer(api, f"record:{uid}")
    old = await api.client.post(f"/records/{uid}/reveal", json={"version": 1}, headers=auth)
    assert old.status_code == 403 and old.json() == {"detail": "consumer tokens reveal current values only"}
    for method, path in (("GET", "/records"), ("GET", f"/records/{uid}"), ("GET", f"/records/{uid}/history"),
                         ("GET", f"/records/{uid}/rotation"), ("GET", "/rotations"), ("GET", "/audit"),
                         ("GET", "/accounts"), ("PATCH", f"/records/{uid}"), ("POST", "/rotations"),
                         ("POST", f"/records/{uid}/restore")):
        r = await api.client.request(method, path, headers=auth, json={} if method != "GET" else None)
        assert r.status_code == 403, (method, path, r.status_code)
        assert "lacks permission" in r.json()["detail"]


async def test_grants_are_checked_when_stored(api: Api) -> None:
    store = TokenStore(api.world.vault.engine)
    info, _ = store.create(Role.CONSUMER, name="c", grants=["tag:backup", "tag:backup", "record:abc"])
    assert info.grants == ("tag:backup", "record:abc")
    assert store.list()[-1].grants == ("tag:backup", "record:abc")
    for role, grants, message in ((Role.OPERATOR, ["tag:backup"], "grants are for consumer tokens"),
                                  (Role.CONSUMER, ["tag:Backup"], "tag 'Backup' is not valid"),
                                  (Role.CONSUMER, ["folder:x"], "expected record:REF or tag:NAME")):
        try:
            store.create(role, name="bad", grants=grants)
        except Exception as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{role} {grants} was accepted")


async def test_api_tags_are_validated(api: Api) -> None:
    admin = api.auth("admin")
    bad = await api.client.post("/records", json={"type": "login", "title": "t", "tags": ["No Spaces"]},
                                headers=admin)
    assert bad.status_code == 422 and "is not valid" in bad.text
    body = {"type": "login", "title": "t", "tags": ["dc-east", "backup"]}
    ok = await api.client.post("/records", json=body, headers=admin)
    assert ok.status_code == 201 and ok.json()["meta"]["tags"] == ["backup", "dc-east"]
    uid = ok.json()["uid"]
    bad_patch = await api.client.patch(f"/records/{uid}", json={"tags": ["x" * 80]}, headers=admin)
    assert bad_patch.status_code == 422
    assert (await api.client.get(f"/records/{uid}", headers=admin)).json()["meta"]["tags"] == ["backup",
                                                                                               "dc-east"]
