"""The console's foundation over HTTP, against the real app (API + console) and a real SQLite vault:
sign-in and its cookie, expiry, sign-out, revoked tokens, CSRF refusals, role enforcement, headers,
the `next=` rule, and rate-limited, audited sign-in attempts."""

from __future__ import annotations

import pytest

from keyturn.console.security_headers import CSP
from keyturn.console.session import safe_next
from tests.console.console_world import console_client, csrf_of, hidden, sessions, signin
from tests.unit.api_world import Api


async def test_signin_sets_a_strict_session_cookie_and_comes_back_to_the_page(api: Api) -> None:
    async with console_client(api) as c:
        r = await c.get("/console/accounts?outcome=failed")
        assert r.status_code == 303
        assert r.headers["location"] == "/console/signin?next=/console/accounts%3Foutcome%3Dfailed"
        r = await signin(c, api.tokens["operator"], "/console/accounts?outcome=failed")
        assert r.status_code == 303 and r.headers["location"] == "/console/accounts?outcome=failed"
        cookie = next(v for k, v in r.headers.multi_items()
                      if k == "set-cookie" and v.startswith("keyturn_console="))
        flags = {p.strip().lower() for p in cookie.split(";")[1:]}
        assert {"httponly", "secure", "path=/console", "samesite=strict"} <= flags
        session_id = cookie.split(";")[0].split("=", 1)[1]
        assert len(session_id) >= 43                       # 32 random bytes
        page = await c.get("/console/accounts?outcome=failed")
        assert page.status_code == 200 and "t-operator" in page.text
        assert api.tokens["operator"] not in page.text and session_id not in page.text
    store = sessions(api)
    assert len(store) == 1 and session_id not in str(vars(store))   # kept by its hash only
    entries = api.world.vault.audit.list(action="console.signin")
    assert len(entries) == 1 and entries[0].details["role"] == "operator"
    assert api.tokens["operator"] not in str(entries[0].details)


async def test_every_console_response_carries_the_security_headers(api: Api) -> None:
    async with console_client(api) as c:
        for response in (await c.get("/console/signin"), await c.get("/console/"),
                         await c.get("/console/nowhere"), await c.get("/console/static/console.css")):
            h = response.headers
            assert h["content-security-policy"] == CSP, response.url
            assert "script-src 'self'" in CSP and "'unsafe-inline'" not in CSP
            assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
            assert h["referrer-policy"] == "no-referrer"
        assert (await c.get("/console/static/console.css")).headers["cache-control"] == "no-cache"
        await signin(c, api.tokens["admin"])
        page = await c.get("/console/")
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text and " style=" not in page.text    # nothing inline
        assert (await c.get("/")).headers["location"] == "/console/"
        # The API keeps its own JSON answers.
        assert (await c.get("/records")).json() == {"detail": "authentication required"}


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(api: Api) -> None:
    async with console_client(api) as c:
        await signin(c, api.tokens["admin"])
        for data in ({}, {"csrf_token": "forged"}):
            r = await c.post("/console/signout", data=data)
            assert r.status_code == 403
            assert "CSRF token is missing or wrong. Nothing was changed." in r.text
        assert len(sessions(api)) == 1 and (await c.get("/console/")).status_code == 200
        denied = api.world.vault.audit.list(action="api.denied")
        assert [e.details["reason"] for e in denied] == ["the form's CSRF token is missing or wrong"] * 2
        r = await c.post("/console/signout", data={"csrf_token": await csrf_of(c)})
        assert r.status_code == 303 and r.headers["location"] == "/console/signin"
        assert len(sessions(api)) == 0
        assert (await c.get("/console/")).status_code == 303
    assert len(api.world.vault.audit.list(action="console.signout")) == 1


async def test_a_foreign_signin_form_or_a_bad_token_is_refused_audited_and_rate_limited(api: Api) -> None:
    async with console_client(api) as c:
        form = await c.get("/console/signin")
        r = await c.post("/console/signin", data={"token": api.tokens["admin"], "next": "/console/",
                                                  "presession": "not-the-cookie"})
        assert r.status_code == 403 and "came from another site" in r.text and len(sessions(api)) == 0
        statuses = []
        for i in range(11):
            form = await c.get("/console/signin")
            r = await c.post("/console/signin", data={"token": f"kt_wrong{i}", "next": "/console/",
                                                      "presession": hidden(form.text, "presession")})
            statuses.append(r.status_code)
        assert statuses == [401] * 10 + [429]
        assert "not accepted" in r.text or "Too many failed sign-ins" in r.text
        assert "Retry-After" in r.headers
        failed = api.world.vault.audit.list(action="console.signin_failed")
        assert len(failed) == 10 and failed[0].details["reason"] == "unknown token"
        assert all("kt_wrong" not in str(e.details) for e in failed)
        # The good token is refused too while the address waits: the back-off comes first.
        assert (await signin(c, api.tokens["admin"])).status_code == 429


async def test_sessions_expire_idle_and_absolute_and_die_with_their_token(api: Api) -> None:
    store = sessions(api)
    now = [1000.0]
    store.clock = lambda: now[0]
    async with console_client(api) as c:
        await signin(c, api.tokens["operator"])
        now[0] += store.idle - 1
        assert (await c.get("/console/")).status_code == 200
        now[0] += store.idle + 1
        r = await c.get("/console/accounts")
        assert r.status_code == 303 and r.headers["location"].endswith("next=/console/accounts&expired=1")
        follow = await c.get(r.headers["location"])
        assert "Your session has ended" in follow.text
        await signin(c, api.tokens["operator"])
        for _ in range(int(store.lifetime // (store.idle / 2)) + 1):   # busy, never idle, still ends
            now[0] += store.idle / 2
            last = await c.get("/console/")
        assert last.status_code == 303
        await signin(c, api.tokens["auditor"])
        assert (await c.get("/console/")).status_code == 200
        api.app.state.ctx.tokens.revoke(api.app.state.ctx.tokens.authenticate(api.tokens["auditor"]).id)
        r = await c.get("/console/")
        assert r.status_code == 303 and "expired=1" in r.headers["location"]
    assert len(store) == 0
    assert api.world.vault.audit.list(action="console.session_ended")[0].details["sessions"] == 1


def test_next_stays_on_this_console() -> None:
    assert safe_next("/console/accounts?page=2") == "/console/accounts?page=2"
    for bad in ("https://evil.example/console/", "//evil.example/console/", "/console/../api",
                "/\\evil.example", "javascript:alert(1)", "/records", "/console/signin", None, "",
                "/console/\nSet-Cookie:x"):
        assert safe_next(bad) == "/console/", bad


async def test_roles_see_only_their_links_and_a_consumer_gets_403_on_reader_pages(api: Api) -> None:
    async with console_client(api) as c:
        await signin(c, api.tokens["consumer"])
        home = await c.get("/console/")
        assert home.status_code == 200 and "reads no accounts or rotations" in home.text
        assert 'href="/console/accounts"' not in home.text and 'href="/console/audit"' not in home.text
        r = await c.get("/console/accounts")
        assert r.status_code == 403 and "lacks permission rotation:read" in r.text
    async with console_client(api) as c:
        await signin(c, api.tokens["operator"])
        home = await c.get("/console/")
        assert 'href="/console/accounts"' in home.text and 'href="/console/audit"' not in home.text


async def test_a_body_that_is_not_a_form_or_too_big_is_refused_before_anything_is_read(api: Api) -> None:
    async with console_client(api) as c:
        await signin(c, api.tokens["admin"])
        token = await csrf_of(c)
        r = await c.post("/console/schedules", content=b'{"record": "u1"}',
                         headers={"Content-Type": "application/json", "X-CSRF-Token": token})
        assert r.status_code == 415 and "application/x-www-form-urlencoded" in r.text
        r = await c.post("/console/schedules/clear", content="&".join(["a=1"] * 2_500).encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": token})
        assert r.status_code == 413 and "more than 2000 fields" in r.text
    assert api.world.vault.audit.list(action="schedule.set") == []
    assert api.world.vault.audit.list(action="schedule.clear") == []


async def test_logs_and_metrics_name_console_routes_and_hold_no_token_or_session(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    async with console_client(api) as c:
        r = await signin(c, api.tokens["operator"], "/console/accounts?q=u1")
        session_id = r.cookies["keyturn_console"]
        token = await csrf_of(c, "/console/accounts?q=u1")
        await c.post("/console/signout", data={"csrf_token": token})
        metrics = (await c.get("/metrics")).text
    assert 'route="/console/accounts"' in metrics and 'route="/accounts"' not in metrics
    logged = "\n".join(f"{rec.getMessage()} {vars(rec)}" for rec in caplog.records)
    assert "/console/accounts" in logged
    for secret in (api.tokens["operator"], session_id, token):
        assert secret not in logged
