"""`/docs` works without the internet (Swagger UI from keyturn itself) and API errors speak API."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from keyturn.api.app import api_terms
from tests.unit.api_world import Api


async def test_docs_page_loads_only_local_assets(api: Api) -> None:
    r = await api.client.get("/docs")
    assert r.status_code == 200, r.text
    # Any absolute URL in the page would be a request to another host from an isolated network.
    assert re.findall(r"(?i)\bhttps?://", r.text) == []
    sources = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert "/docs/assets/swagger-ui-bundle.js" in sources and "/docs/assets/swagger-ui.css" in sources
    assert all(not urlsplit(s).netloc for s in sources), sources
    directives = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
    assert directives["script-src"].startswith("'self' 'sha256-")
    assert directives["style-src"] == "'self'"
    assert "http" not in r.headers["content-security-policy"]

    js = await api.client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in js.content and len(js.content) > 100_000
    css = await api.client.get("/docs/assets/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"
    assert (await api.client.get("/docs/assets/swagger-ui-bundle.js.map")).status_code == 404
    assert (await api.client.get("/docs/assets/..%2F__init__.py")).status_code == 404


async def test_unknown_record_says_what_to_do_in_api_terms(api: Api) -> None:
    r = await api.client.get("/records/no-such-thing", headers=api.auth("admin"))
    assert r.status_code == 404
    assert r.json() == {"detail": "no record with uid or title 'no-such-thing' (see `GET /records`)"}
    r = await api.client.get("/records/U1", headers=api.auth("admin"))   # the world's user is "u1"
    assert r.status_code == 200
    r = await api.client.get("/records/sw1-admn", headers=api.auth("admin"))
    assert r.status_code == 404
    assert r.json() == {"detail": "no record with uid or title 'sw1-admn'; did you mean 'sw1-admin'?"}


def test_api_terms() -> None:
    cases = {
        "run `keyturn rotate X` now": "run `POST /rotations` now",
        "safe to run `keyturn rotate r1` now": 'safe to run `POST /rotations {"records": ["r1"]}` now',
        "see `keyturn rotation log abc`": "see `GET /rotations/abc`",
        "set it with `keyturn rotation set RECORD`": "set it with `PUT /records/{ref}/rotation`",
        "run `keyturn vault rekey` first": "run `keyturn vault rekey` (on the keyturn host) first",
        "nothing to translate": "nothing to translate",
    }
    assert {text: api_terms(text) for text in cases} == cases
