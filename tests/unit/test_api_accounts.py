"""`GET /accounts`, `GET /rotations` and `POST /rotations` with a filter or `all`, through the real app over
httpx.ASGITransport and a real vault (tests/unit/api_world.py); the same objects the CLI prints."""

from __future__ import annotations

from keyturn.accounts_view import AccountList, RotationList, list_accounts, list_rotations
from tests.unit.api_world import Api


async def _rotate(api: Api, body: dict[str, object], role: str = "operator") -> list[dict[str, object]]:
    r = await api.client.post("/rotations", json=body, headers=api.auth(role))
    assert r.status_code == 202, r.text
    accepted: list[dict[str, object]] = r.json()["rotations"]
    for a in accepted:
        await api.wait_rotation(str(a["id"]))
    return accepted


async def test_post_rotations_with_a_filter_or_all(api: Api) -> None:
    world = api.world
    sw2 = world.add_user("sw2 netops", "netops2", "Passw0rd-2")
    world.dev.set_user("netops2", "Passw0rd-2")
    sw3 = world.add_user("sw3 netops", "netops3", "Passw0rd-3")
    world.dev.set_user("netops3", "Passw0rd-3")
    world.vault.add(type="pamUser", title="sw9 no profile")
    accepted = await _rotate(api, {"filter": "title~netops"})
    assert [(a["record_uid"], a["title"]) for a in accepted] == [(sw2, "sw2 netops"), (sw3, "sw3 netops")]
    assert world.dev.password("netops2") == world.current(sw2) != "Passw0rd-2"
    audit = world.vault.audit.list(action="api.rotate")
    assert sorted(e.record_uid for e in audit) == sorted([sw2, sw3])
    assert {e.details["request_id"] for e in audit} == {a["id"] for a in accepted}
    accepted = await _rotate(api, {"all": True})
    assert sorted(str(a["title"]) for a in accepted) == ["sw2 netops", "sw3 netops", "u1"]


async def test_post_rotations_refuses_a_filter_matching_nothing_and_mixed_selections(api: Api) -> None:
    h = api.auth("operator")
    r = await api.client.post("/rotations", json={"filter": "title~nowhere"}, headers=h)
    assert r.status_code == 422
    assert r.json()["detail"] == "no record with a rotation profile matches the filter; nothing was started"
    r = await api.client.post("/rotations", json={"filter": "colour=red"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"].startswith("bad filter term 'colour=red'")
    for body in ({"records": ["u1"], "all": True}, {"filter": "title~u", "all": True}, {}, {"all": False}):
        r = await api.client.post("/rotations", json=body, headers=h)
        assert r.status_code == 422, body
        assert "exactly one of records, filter, or all" in r.text
    assert api.world.vault.audit.list(action="api.rotate") == []
    assert (await api.client.post("/rotations", json={"all": True}, headers=api.auth("auditor"))
            ).status_code == 403


async def test_get_accounts_is_the_cli_view_filtered_and_paged(api: Api) -> None:
    world = api.world
    world.add_user("sw2 netops", "netops2", "Passw0rd-2")      # not on the device: its rotation fails
    await _rotate(api, {"all": True})
    h = api.auth("auditor")
    r = await api.client.get("/accounts", headers=h)
    assert r.status_code == 200
    body = r.json()
    assert body == AccountList.model_validate(body).model_dump(mode="json")
    assert body == list_accounts(world.vault.engine).model_dump(mode="json") | {"limit": 1000}
    assert [(a["title"], a["last_outcome"]) for a in body["accounts"]] == [("sw2 netops", "failed"),
                                                                         ("u1", "rotated")]
    assert body["accounts"][1]["last_at"].endswith("Z") and body["accounts"][1]["record_uid"] == world.user
    got = (await api.client.get("/accounts", params={"outcome": "failed"}, headers=h)).json()
    assert [a["title"] for a in got["accounts"]] == ["sw2 netops"]
    params = {"filter": "title=u1", "site": "default"}
    got = (await api.client.get("/accounts", params=params, headers=h)).json()
    assert [a["title"] for a in got["accounts"]] == ["u1"]
    got = (await api.client.get("/accounts", params={"limit": 1, "offset": 1}, headers=h)).json()
    assert ([a["title"] for a in got["accounts"]], got["total"]) == (["u1"], 2)
    r = await api.client.get("/accounts", params={"outcome": "great"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"].startswith("unknown outcome 'great'")


async def test_get_rotations_filters_pages_and_hides_script_output_from_non_admins(api: Api) -> None:
    world = api.world
    for _ in range(3):
        await _rotate(api, {"records": [world.user]})
    h = api.auth("operator")
    r = await api.client.get("/rotations", params={"limit": 2}, headers=h)
    assert r.status_code == 200
    page = r.json()
    assert (page["total"], page["limit"], page["offset"], len(page["rotations"])) == (3, 2, 0, 2)
    whole = list_rotations(world.vault.engine, limit=2).model_dump(mode="json")
    assert page == whole
    assert RotationList.model_validate(page).rotations[0].outcome == "rotated"
    rest = (await api.client.get("/rotations", params={"limit": 2, "offset": 2}, headers=h)).json()
    assert [x["id"] for x in rest["rotations"]] == [list_rotations(world.vault.engine).rotations[2].id]
    one = (await api.client.get(f"/rotations/{page['rotations'][0]['id']}", headers=h)).json()
    assert {k: v for k, v in one.items() if k not in ("steps", "request_id")} == page["rotations"][0]
    assert (await api.client.get("/rotations", params={"record": "u1", "outcome": "failed"}, headers=h)
            ).json()["total"] == 0
    assert (await api.client.get("/rotations", params={"record": "nobody"}, headers=h)).status_code == 404
    assert (await api.client.get("/rotations", params={"since": "2999-01-01T00:00:00Z"}, headers=h)
            ).json()["total"] == 0
    assert (await api.client.get("/rotations", params={"since": "soon"}, headers=h)).status_code == 422


async def test_openapi_documents_the_shared_schema(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert {"Account", "AccountList", "Rotation", "RotationList", "RotateIn"} <= set(schemas)
    assert "record_uid" in schemas["Account"]["properties"]
    assert schemas["Account"]["properties"]["next_due"]["anyOf"][0]["format"] == "date-time"
    assert doc["paths"]["/accounts"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AccountList"}
    assert set(schemas["RotateIn"]["properties"]) == {"records", "filter", "all"}
