"""Malformed bodies → 422 with a field path (input not echoed); huge bodies → 413; schedules validated."""

from __future__ import annotations

import pytest

from tests.unit.api_world import Api, open_api


@pytest.fixture
async def api(world):
    async for a in open_api(world, max_body=4096):
        yield a


async def test_malformed_body_422_with_field_path_and_no_echo(api: Api) -> None:
    body = {"type": "pamUser", "title": "x", "fields": [{"type": "password", "value": ["Leak-Me-1", "two"]}]}
    r = await api.client.post("/records", json=body, headers=api.auth("admin"))
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail[0]["loc"] == ["body", "fields", 0, "value"]
    assert "Leak-Me-1" not in r.text
    r = await api.client.post("/rotations", json={"records": []}, headers=api.auth("admin"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "records"]


async def test_huge_body_413_by_length_and_by_stream(api: Api) -> None:
    h = api.auth("admin")
    big = {"type": "login", "title": "t", "fields": [{"type": "note", "value": ["x" * 10_000]}]}
    r = await api.client.post("/records", json=big, headers=h)
    assert r.status_code == 413

    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    r = await api.client.post("/records", content=chunks(), headers={**h, "content-type": "application/json"})
    assert r.status_code == 413
    assert [r for r in api.world.vault.summaries() if r.title == "t"] == []


async def test_schedule_put_get_delete_and_refusals(api: Api) -> None:
    uid = api.world.user
    h = api.auth("operator")
    r = await api.client.put(f"/records/{uid}/schedule", headers=h,
                             json={"spec": "0 3 * * 6", "tz": "Europe/Zurich", "window": "Sat 01:00-05:00"})
    assert r.status_code == 200, r.text
    assert r.json()["schedule"]["tz"] == "Europe/Zurich" and r.json()["next_slot"]
    got = await api.client.get(f"/records/{uid}/schedule", headers=api.auth("auditor"))
    assert got.json()["schedule"]["spec"] == "0 3 * * 6"
    bad = await api.client.put(f"/records/{uid}/schedule", headers=h, json={"spec": "61 * * * *"})
    assert bad.status_code == 422
    bad_tz = await api.client.put(f"/records/{uid}/schedule", headers=h,
                                  json={"spec": "every 30d", "tz": "Mars/X"})
    assert bad_tz.status_code == 422
    plain = api.world.vault.add(type="login", title="no profile here")
    r = await api.client.put(f"/records/{plain.uid}/schedule", headers=h, json={"spec": "every 30d"})
    assert r.status_code == 422 and "no rotation profile" in r.json()["detail"]
    assert (await api.client.delete(f"/records/{uid}/schedule", headers=h)).status_code == 204
    assert (await api.client.get(f"/records/{uid}/schedule", headers=h)).json()["schedule"] is None
