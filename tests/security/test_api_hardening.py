"""Issue 12, item 14 (and item 10's API half): the HTTP surface.

* a client guessing tokens is slowed to a crawl: 429 + Retry-After after 10 bad tokens a minute,
  decided before its token is read (a right guess while throttled is not told apart);
* a valid token spamming 403s cannot grow the audit log without limit (capped like anonymous 401s);
* every answer says nosniff / no-referrer / no-store, the docs page runs nothing but Swagger UI;
* post-rotation script output is for admins only (operators and auditors see exit code and ok).
"""

from __future__ import annotations

import re
import sys
import textwrap
from typing import Any

import httpx

from keyturn.api.denials import AuthBackoff, DenialBudget
from keyturn.scripts.attachments import ScriptAttachment, to_meta
from tests.unit.api_world import Api

BAD = {"Authorization": "Bearer kt_" + "G" * 43}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client_from(api: Api, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_token_guessing_is_throttled_before_the_token_is_read(api: Api) -> None:
    clock = Clock()
    api.app.state.ctx.auth_backoff = AuthBackoff(clock=clock)
    async with client_from(api, "203.0.113.7") as guesser, client_from(api, "198.51.100.2") as bystander:
        statuses = [(await guesser.get("/records", headers=BAD)).status_code for _ in range(12)]
        assert statuses == [401] * 10 + [429] * 2
        throttled = await guesser.get("/records", headers=api.auth("admin"))    # a right guess now...
        assert throttled.status_code == 429                                        # ...looks the same
        assert throttled.headers["retry-after"] == "6"                             # 10/min: one in 6 s
        assert "too many failed authentications" in throttled.json()["detail"]
        assert (await bystander.get("/records", headers=api.auth("admin"))).status_code == 200
        assert (await guesser.get("/records")).status_code == 401                 # no token: not counted
        clock.now += 6
        assert (await guesser.get("/records", headers=api.auth("admin"))).status_code == 200
        assert (await guesser.get("/records", headers=BAD)).status_code == 401
        assert (await guesser.get("/records", headers=BAD)).status_code == 429    # one token back only
    throttles = [e for e in api.world.vault.audit.list(action="api.denied") if e.details["status"] == 429]
    assert throttles and all(e.details["client"] == "203.0.113.7" for e in throttles)


async def test_a_403_flood_writes_a_bounded_number_of_audit_entries(api: Api) -> None:
    api.app.state.ctx.denials = DenialBudget(clock=Clock())          # time stands still
    burst = int(api.app.state.ctx.denials.burst)
    before = len(api.world.vault.audit.list(action="api.denied"))
    for _ in range(burst + 50):
        r = await api.client.post("/rotations", json={"records": [api.world.user]},
                                  headers=api.auth("auditor"))
        assert r.status_code == 403
    assert len(api.world.vault.audit.list(action="api.denied")) - before == burst
    # Another token's denials are not hidden by this one's flood.
    r = await api.client.post(f"/records/{api.world.user}/reveal", headers=api.auth("operator"))
    assert r.status_code == 403
    last = api.world.vault.audit.list(action="api.denied")[0]
    assert last.details["token_name"] == "t-operator" and "suppressed" not in last.details


EVERY = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


async def test_every_answer_carries_the_security_headers(api: Api) -> None:
    h = api.auth("admin")
    answers = [
        await api.client.get("/healthz"), await api.client.get("/metrics"),
        await api.client.get("/openapi.json"),
        await api.client.get("/records"), await api.client.get("/records", headers=h),
        await api.client.get("/records/nope", headers=h),
        await api.client.post("/rotations", json={"records": [api.world.user]}, headers=api.auth("auditor")),
        await api.client.post("/records", json={"type": "login"}, headers=h),
        await api.client.post("/records", content=b"x" * (2 * 1024 * 1024), headers=h),
        await api.client.post(f"/records/{api.world.user}/reveal", headers=h),
        await api.client.get(f"/records/{api.world.user}/history", headers=h),
    ]
    assert sorted({r.status_code for r in answers}) == [200, 401, 403, 404, 413, 422]
    for r in answers:
        assert {k: r.headers.get(k) for k in EVERY} == EVERY, (r.request.url, r.status_code)
        assert r.headers["cache-control"] == "no-store", (r.request.url, r.status_code)


async def test_the_docs_page_runs_only_swagger_ui(api: Api) -> None:
    r = await api.client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp.replace("'", "")
    scripts = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    assert len(scripts) == 1 and directives["script-src"].count("'sha256-") == 1
    assert r.headers["x-content-type-options"] == "nosniff"
    assert (await api.client.get("/redoc")).status_code == 404


SCRIPT = textwrap.dedent("""
    import sys
    print("deployed to the jump host; token=abc123-not-a-password")
    print("stderr chatter", file=sys.stderr)
""")


async def test_script_output_is_for_admins_only(api: Api, tmp_path: Any) -> None:
    script = tmp_path / "post.py"
    script.write_text(SCRIPT)
    api.world.vault.set_meta(api.world.user, "scripts", to_meta([
        ScriptAttachment(script=str(script), prefix=sys.executable, timeout=30)]))
    r = await api.client.post("/rotations", json={"records": [api.world.user]}, headers=api.auth("operator"))
    rid = r.json()["rotations"][0]["id"]
    done = await api.wait_rotation(rid)
    assert done["outcome"] == "rotated", done
    for role in ("admin", "operator", "auditor"):
        one = (await api.client.get(f"/rotations/{rid}", headers=api.auth(role))).json()
        hist = (await api.client.get(f"/records/{api.world.user}/history", headers=api.auth(role))).json()
        for scripts in (one["scripts"], hist["rotations"][0]["scripts"]):
            assert len(scripts) == 1 and scripts[0]["exit_code"] == 0 and scripts[0]["ok"] is True
            if role == "admin":
                assert "deployed to the jump host" in scripts[0]["stdout"]
                assert "stderr chatter" in scripts[0]["stderr"]
            else:
                assert "stdout" not in scripts[0] and "stderr" not in scripts[0], role
                assert "jump host" not in str(one) + str(hist)
