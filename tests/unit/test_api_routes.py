"""API happy paths per route, through the real app over httpx.ASGITransport and a real vault."""

from __future__ import annotations

from keyturn.api.routes.records import MASK
from keyturn.scripts.attachments import ScriptAttachment, to_meta
from keyturn.secret import Secret
from keyturn.vault import Field
from tests.unit.api_world import Api
from tests.unit.engine_world import OLD


async def test_health_endpoints_need_no_token(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    r = await api.client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"vault": "open", "database": "ok", "scheduler": "disabled",
                                  "rotations": "accepting"}
    m = await api.client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert "keyturn_rotation_queue_depth" in m.text


async def test_records_crud_secret_is_write_only(api: Api) -> None:
    h = api.auth("admin")
    body = {"type": "pamUser", "title": "api user",
            "fields": [{"type": "login", "value": ["bob"]},
                       {"type": "password", "value": ["S3cret-Value-1"]}],
            "custom": [{"type": "text", "label": "site", "value": ["hq"]}]}
    r = await api.client.post("/records", json=body, headers=h)
    assert r.status_code == 201, r.text
    rec = r.json()
    assert "S3cret-Value-1" not in r.text
    assert {"type": "password", "label": None, "value": [MASK]} in rec["fields"]
    uid = rec["uid"]

    got = await api.client.get(f"/records/{uid}", headers=api.auth("auditor"))
    assert got.status_code == 200 and "S3cret-Value-1" not in got.text
    listed = await api.client.get("/records", params={"title": "api"}, headers=api.auth("operator"))
    assert [x["uid"] for x in listed.json()] == [uid]

    # Writing the placeholder back keeps the secret; a new title is applied.
    fields = got.json()["fields"]
    r = await api.client.patch(f"/records/{uid}", json={"title": "api user 2", "fields": fields}, headers=h)
    assert r.status_code == 200, r.text
    assert api.world.vault.secret(uid).reveal() == "S3cret-Value-1"
    assert api.world.vault.get(uid).title == "api user 2"

    r = await api.client.delete(f"/records/{uid}", headers=h)
    assert r.status_code == 204
    assert (await api.client.get(f"/records/{uid}", headers=h)).status_code == 404


async def test_duplicate_title_is_409_and_unknown_record_404(api: Api) -> None:
    h = api.auth("admin")
    r = await api.client.post("/records", json={"type": "login", "title": "u1"}, headers=h)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    assert (await api.client.get("/records/nope", headers=h)).status_code == 404


async def test_reveal_is_admin_only_and_audited(api: Api) -> None:
    uid = api.world.user
    r = await api.client.post(f"/records/{uid}/reveal", headers=api.auth("admin"))
    assert r.status_code == 200
    assert r.json() == {"uid": uid, "field": "password", "value": OLD, "version": None}
    assert r.headers["cache-control"] == "no-store"
    entries = api.world.vault.audit.list(record_uid=uid, action="reveal")
    assert len(entries) == 1 and entries[0].actor.startswith("api:t-admin#")
    assert OLD not in str(entries[0].details)


async def test_profile_put_get_and_refusal(api: Api) -> None:
    world = api.world
    uid = world.add_user("u2", "netops2", "Passw0rd-xyz-2")
    # A noop profile needs a script to have any effect (tests/security/test_noop_profiles.py).
    world.vault.set_meta(uid, "scripts", to_meta([ScriptAttachment(script="/bin/true")]))
    r = await api.client.put(f"/records/{uid}/rotation", headers=api.auth("operator"),
                             json={"target": "noop", "max_attempts": 2})
    assert r.status_code == 200, r.text
    assert r.json()["target"] == "noop" and r.json()["max_attempts"] == 2
    got = await api.client.get(f"/records/{uid}/rotation", headers=api.auth("auditor"))
    assert got.json()["target"] == "noop"
    bad = await api.client.put(f"/records/{uid}/rotation", headers=api.auth("admin"),
                               json={"target": "iosxe-restconff"})
    assert bad.status_code == 422 and "did you mean" in bad.json()["detail"]


async def test_rotate_202_then_status_steps_and_history(api: Api) -> None:
    uid = api.world.user
    r = await api.client.post("/rotations", json={"records": [uid, "u1"]}, headers=api.auth("operator"))
    assert r.status_code == 202, r.text
    accepted = r.json()["rotations"]
    assert len(accepted) == 1 and accepted[0]["record_uid"] == uid   # same record once
    rid = accepted[0]["id"]
    done = await api.wait_rotation(rid, role="auditor")
    assert done["outcome"] == "rotated", done
    assert [s["step"] for s in done["steps"]][:3] == ["lock", "verify_current", "generate"]
    assert done["steps"][-1]["step"] == "audit"
    new = api.world.current()
    assert new != OLD and api.world.dev.password("netops") == new

    hist = await api.client.get(f"/records/{uid}/history", headers=api.auth("auditor"))
    body = hist.json()
    assert body["rotations"][0]["outcome"] == "rotated"
    assert [v["state"] for v in body["versions"]][:2] == ["current", "previous"]
    assert new not in hist.text

    metrics = (await api.client.get("/metrics")).text
    assert 'keyturn_rotations_total{outcome="rotated",target="fake"} 1.0' in metrics
    assert 'keyturn_rotation_duration_seconds_count{target="fake"} 1.0' in metrics
    audit = api.world.vault.audit.list(record_uid=uid, action="api.rotate")
    assert audit and audit[0].details["request_id"] == rid


async def test_rotate_refuses_whole_request_on_bad_reference(api: Api) -> None:
    world = api.world
    plain = world.vault.add(type="login", title="no profile")
    h = api.auth("admin")
    r = await api.client.post("/rotations", json={"records": [world.user, "missing"]}, headers=h)
    assert r.status_code == 404
    r = await api.client.post("/rotations", json={"records": [plain.uid]}, headers=h)
    assert r.status_code == 422 and "no rotation profile" in r.json()["detail"]
    assert world.vault.audit.list(action="api.rotate") == []
    assert (await api.client.get("/rotations/" + "0" * 32, headers=h)).status_code == 404


async def test_audit_query_since_record_limit(api: Api) -> None:
    h = api.auth("auditor")
    newest = (await api.client.get("/audit", params={"limit": 2}, headers=h)).json()
    ids = [e["id"] for e in newest["entries"]]
    assert len(ids) == 2 and ids[0] > ids[1] and newest["next_since"] is None
    page = (await api.client.get("/audit", params={"since": 0, "limit": 3}, headers=h)).json()
    assert [e["id"] for e in page["entries"]] == [1, 2, 3] and page["next_since"] == 3
    assert page["entries"][0]["action"] == "vault.init"
    rec = (await api.client.get("/audit", params={"record": "u1"}, headers=h)).json()
    assert rec["entries"] and {e["record_uid"] for e in rec["entries"]} == {api.world.user}
    first_ts = page["entries"][2]["ts"]
    by_time = (await api.client.get("/audit", params={"since": first_ts}, headers=h)).json()
    assert by_time["entries"][0]["id"] <= 3
    bad = await api.client.get("/audit", params={"since": "yesterday"}, headers=h)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "since"]


async def test_openapi_is_served_and_lists_every_route(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    for path in ("/records", "/records/{ref}", "/records/{ref}/reveal", "/records/{ref}/rotation",
                 "/rotations", "/rotations/{rotation_id}", "/records/{ref}/history", "/audit",
                 "/healthz", "/readyz", "/metrics"):
        assert path in spec["paths"], path


async def test_shutdown_journals_queued_rotations_as_cancelled(api: Api) -> None:
    """A rotation accepted (202) but still queued at shutdown is journaled as failed/cancelled under its
    id — nothing touched — so its status survives a restart; the running one is parked for recovery."""
    import asyncio

    from keyturn.engine.journal import Journal

    other = api.world.add_user("u2", "second", "Second-Old-Pw-1")     # same device: queued behind u1
    api.world.dev.set_user("second", "Second-Old-Pw-1")
    fake = api.world.targets["fake"]
    fake.gate = asyncio.Event()                                        # u1's change waits forever
    first = await api.client.post("/rotations", json={"records": [api.world.user]},
                                  headers=api.auth("operator"))
    second = await api.client.post("/rotations", json={"records": [other]}, headers=api.auth("operator"))
    ids = [first.json()["rotations"][0]["id"], second.json()["rotations"][0]["id"]]
    for _ in range(200):
        if fake.parallel.get(str(api.world.dev.path)):
            break
        await asyncio.sleep(0.01)
    runner = api.app.state.ctx.runner
    assert await runner.drain(0.05) == (0, 1)                         # u1 parked mid-change
    assert runner.get(ids[1]).state == "cancelled"
    row = Journal(api.world.vault.engine).get(ids[1])
    assert row is not None and str(row.outcome) == "failed" and "stopped before" in row.reason
    assert api.world.vault.audit.list(action="rotation.cancelled")[0].details["rotation_id"] == ids[1]
    assert api.world.current(other) == "Second-Old-Pw-1"              # nothing touched
    assert api.world.dev.password("second") == "Second-Old-Pw-1"
    status = await api.client.get(f"/rotations/{ids[1]}", headers=api.auth("auditor"))
    assert status.status_code == 200 and status.json()["outcome"] == "failed"


async def test_enable_secret_profile_links_the_admin_record_for_admins_only(api: Api) -> None:
    world = api.world
    enable = world.vault.add(type="pamUser", title="sw1-enable",
                             fields=[Field("login", value=["enable"]),
                                     Field("password", value=[Secret("En-1")])])
    body = {"target": "iosxe-enable-secret", "resource": world.resource.uid, "admin": world.admin.uid}
    as_operator = await api.client.put(f"/records/{enable.uid}/rotation", headers=api.auth("operator"),
                                       json=body)
    assert as_operator.status_code == 200, as_operator.text
    # an operator may not write records: the admin record stays as it was
    assert world.vault.get(world.admin.uid).custom_value("enable_secret_record") is None
    as_admin = await api.client.put(f"/records/{enable.uid}/rotation", headers=api.auth("admin"), json=body)
    assert as_admin.status_code == 200, as_admin.text
    assert world.vault.get(world.admin.uid).custom_value("enable_secret_record") == enable.uid
