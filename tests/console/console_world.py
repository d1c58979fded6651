"""Shared helpers for the console's HTTP tests: the real app (API + console) over a real SQLite vault
(tests/unit/engine_world.py), an httpx client on https://test (so the `Secure` cookie is sent), and
sign-in / CSRF helpers that go through the pages as a browser does."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx

from tests.unit.api_world import Api

_HIDDEN = re.compile(r'<input type="hidden" name="(?P<name>[a-z_]+)" value="(?P<value>[^"]*)">')


def hidden(page: str, name: str) -> str:
    """The value of the hidden input `name` in `page` (first one)."""
    for m in _HIDDEN.finditer(page):
        if m.group("name") == name:
            return html.unescape(m.group("value"))
    raise AssertionError(f"no hidden field {name!r} in the page")


async def signin(client: httpx.AsyncClient, token: str, next_path: str = "/console/") -> httpx.Response:
    """Sign in through the form (GET for the pre-session token, then POST); the POST's response."""
    form = await client.get("/console/signin", params={"next": next_path})
    assert form.status_code == 200, form.text
    return await client.post("/console/signin", data={
        "token": token, "next": hidden(form.text, "next"), "presession": hidden(form.text, "presession")})


def console_client(api: Api) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="https://test")


async def csrf_of(client: httpx.AsyncClient, path: str = "/console/") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return hidden(page.text, "csrf_token")


def sessions(api: Api) -> Any:
    """The console's session store (to count sessions and move its clock)."""
    for route in api.app.routes:
        if getattr(route, "name", "") == "console":
            return route.app.state.sessions
    raise AssertionError("console not mounted")
