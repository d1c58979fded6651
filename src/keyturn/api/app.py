"""The REST API: `create_app(vault, engine_factory=...)` builds the FastAPI app (OpenAPI 3 at
``/openapi.json``, docs at ``/docs``).

    app = create_app(vault, engine_factory=lambda actor: RotationEngine(vault, actor=actor))

The vault is synchronous and thread-safe; routes call it through `ApiContext.db` (a worker thread).
Rotations run in the app's `RotationRunner` on the serving event loop; `keyturn.serve` drains it on
shutdown. Authorisation is the table in `keyturn.api.auth`.

Every response carries ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and, unless
its route says otherwise, ``Cache-Control: no-store`` (answers are per-caller data: secrets, script
output); any HTML carries a Content-Security-Policy — the docs page a strict one naming exactly the
assets it loads (`SecurityHeaders`, `_add_docs`).

Error mapping (one place, `_keyturn_error`): record not found → 404; ambiguous / duplicate → 409;
invalid input the vault or engine refuses (profile, policy, config, vault rules) → 422; vault sealed or
database unavailable → 503. Request validation → 422 with field paths (the offending input is not
echoed back: it may be a secret). Bodies over `max_body` bytes → 413. Anything unexpected → 500 with no
detail (logged by type).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyturn.api.context import ApiContext, SchedulerLike
from keyturn.api.jobs import EngineFactory, RotationRunner
from keyturn.api.metrics import Metrics
from keyturn.api.routes import accounts, audit, health, profiles, records, reveal, rotations, schedules
from keyturn.api.tokens import TokenStore
from keyturn.errors import (
    AmbiguousRecord,
    ConfigError,
    DuplicateRecord,
    KeyturnError,
    PolicyError,
    ProfileError,
    RecordNotFound,
    StorageUnavailable,
    VaultError,
    VaultSealed,
)
from keyturn.vault import Vault

log = logging.getLogger("keyturn.api")
MAX_BODY = 1024 * 1024

# KeyturnError class → HTTP status, first match wins (subclasses before their parents).
ERROR_STATUS: tuple[tuple[type[KeyturnError], int], ...] = (
    (RecordNotFound, 404),
    (AmbiguousRecord, 409),
    (DuplicateRecord, 409),
    (VaultSealed, 503),
    (StorageUnavailable, 503),
    (ProfileError, 422),
    (PolicyError, 422),
    (ConfigError, 422),
    (VaultError, 422),
)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413: by Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            code = 413 if length.isdigit() else 400
            response = JSONResponse({"detail": "request body too large" if code == 413
                                     else "bad Content-Length"}, status_code=code)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # FastAPI re-raises HTTPException from body reading, so this becomes the 413.
                    raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, limited, send)


# Headers every response gets (a route's own value wins).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
# HTML without a policy of its own may load and run nothing.
HTML_CSP = b"default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
# The docs page's Swagger UI assets, served by keyturn itself from the `swagger-ui-bundle` package (the
# `server` extra): management networks often cannot reach a CDN.
DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
               "swagger-ui.css": "text/css; charset=utf-8"}
DOCS_ASSET_PATH = "/docs/assets"


class SecurityHeaders:
    """Add `SECURITY_HEADERS` to every response, and `HTML_CSP` to HTML that has no CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                have = {name.lower(): value for name, value in headers}
                headers += [(name, value) for name, value in SECURITY_HEADERS if name not in have]
                if have.get(b"content-type", b"").startswith(b"text/html") \
                        and b"content-security-policy" not in have:
                    headers.append((b"content-security-policy", HTML_CSP))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def _swagger_ui_dir() -> Path | None:
    try:
        from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return Path(str(swagger_ui_path))


def _add_docs(app: FastAPI) -> None:
    """`/docs`: Swagger UI from keyturn's own `/docs/assets/` under a CSP that allows exactly those two
    assets and, by hash, its one inline script — nothing else runs, nothing is framed, nothing is
    posted anywhere, and nothing is fetched from another host. Without the assets package, `/docs` is a
    503 naming the extra to install."""
    assets = _swagger_ui_dir()
    page = get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
                               swagger_js_url=f"{DOCS_ASSET_PATH}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_ASSET_PATH}/swagger-ui.css",
                               swagger_favicon_url="data:,")
    body = bytes(page.body)
    inline = re.findall(rb"<script>(.*?)</script>", body, re.DOTALL)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in inline)
    policy = (f"default-src 'none'; script-src 'self' {hashes}; style-src 'self'; "
              "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    missing = JSONResponse({"detail": "Swagger UI assets are not installed on the keyturn host: install "
                            "the server extra (pip install 'keyturn[server]'); /openapi.json works "
                            "without them"}, status_code=503)

    @app.get("/docs", include_in_schema=False, response_model=None)
    async def docs() -> Response:
        if assets is None:
            return missing
        return HTMLResponse(body, headers={"Content-Security-Policy": policy, "Cache-Control": "no-cache"})

    cache: dict[str, bytes] = {}

    def serve_asset(name: str) -> None:
        async def asset() -> Response:
            if assets is None:
                return missing
            if name not in cache:
                cache[name] = await asyncio.to_thread((assets / name).read_bytes)
            return Response(cache[name], media_type=DOCS_ASSETS[name],
                            headers={"Cache-Control": "public, max-age=86400"})

        app.get(f"{DOCS_ASSET_PATH}/{name}", include_in_schema=False, response_model=None)(asset)

    for name in DOCS_ASSETS:
        serve_asset(name)


class RequestLog:
    """One JSON log line and one metric per request: method, route template, status, duration, actor."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            state = scope.get("state") or {}
            self.metrics.request(scope["method"], route, status)
            log.info("%s %s %d", scope["method"], route, status, extra={
                "method": scope["method"], "path": route, "status": status,
                "duration_ms": round((time.perf_counter() - t0) * 1000, 2),
                "actor": state.get("actor") if isinstance(state, dict) else None,
            })


# CLI commands that engine and vault messages suggest → what an API client does instead ("{0}": the
# command's first argument, a record or rotation id). Commands without an API equivalent are kept and
# said to be run on the keyturn host (`api_terms`).
API_EQUIVALENTS: tuple[tuple[str, str, str], ...] = (
    ("record list", "GET /records", "GET /records"),
    ("record show", "GET /records/{0}", "GET /records/{ref}"),
    ("record edit", "PATCH /records/{0}", "PATCH /records/{ref}"),
    ("record rm", "DELETE /records/{0}", "DELETE /records/{ref}"),
    ("record restore", "POST /records/{0}/restore", "POST /records/{ref}/restore"),
    ("reveal", "POST /records/{0}/reveal", "POST /records/{ref}/reveal"),
    ("history", "GET /records/{0}/history", "GET /records/{ref}/history"),
    ("rotation set", "PUT /records/{0}/rotation", "PUT /records/{ref}/rotation"),
    ("rotation show", "GET /records/{0}/rotation", "GET /records/{ref}/rotation"),
    ("rotation log", "GET /rotations/{0}", "GET /rotations/{id}"),
    ("schedule set", "PUT /records/{0}/schedule", "PUT /records/{ref}/schedule"),
    ("schedule clear", "DELETE /records/{0}/schedule", "DELETE /records/{ref}/schedule"),
    ("rotate", 'POST /rotations {{"records": ["{0}"]}}', "POST /rotations"),
)
_CLI_COMMAND = re.compile(r"`keyturn ([^`]+)`")


def api_terms(message: str) -> str:
    """`message` with each `keyturn …` command it suggests turned into the API request that does the
    same, or, when the API has none (`keyturn vault rekey`, `keyturn device trust`), marked as a
    command for the keyturn host."""

    def one(m: re.Match[str]) -> str:
        words = m.group(1).split()
        for command, with_arg, without in API_EQUIVALENTS:
            n = len(command.split())
            if words[:n] == command.split():
                arg = next((w for w in words[n:] if not w.startswith("-")), None)
                placeholder = arg is None or arg.isupper()   # `keyturn rotate RECORD`
                return f"`{without if placeholder else with_arg.format(arg)}`"
        return f"{m.group(0)} (on the keyturn host)"

    return _CLI_COMMAND.sub(one, message)


def _status_for(exc: KeyturnError) -> int:
    return next((code for cls, code in ERROR_STATUS if isinstance(exc, cls)), 500)


async def _keyturn_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KeyturnError)
    code = _status_for(exc)
    message = api_terms(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if code >= 500:
        log.warning("request failed: %s", message, extra={"status": code})
    return JSONResponse({"detail": message}, status_code=code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
              for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error (%s)", type(exc).__name__, exc_info=exc)
    # Answered by Starlette's outermost error middleware, past `SecurityHeaders`: add them here.
    return JSONResponse({"detail": "internal error"}, status_code=500,
                        headers={k.decode(): v.decode() for k, v in SECURITY_HEADERS})


def create_app(
    vault: Vault, *, engine_factory: EngineFactory, scheduler: SchedulerLike | None = None,
    scheduler_alive: Callable[[], bool] | None = None, concurrency: int = 16, per_device: int = 1,
    max_body: int = MAX_BODY, rate_limited: Callable[[], int] | None = None,
) -> FastAPI:
    """The API app over an open `vault`.

    `engine_factory(actor)` makes the rotation engine for one audit actor (called lazily, once per
    actor). `scheduler` (optional) is reloaded after schedule/profile changes and reported by `/readyz`
    and `/metrics`; `scheduler_alive()` tells `/readyz` whether its loop still runs. `rate_limited()`
    returns the number of HTTP 429s device APIs have answered (for `/metrics`).
    """
    metrics = Metrics(vault.engine)
    runner = RotationRunner(engine_factory, concurrency=concurrency, per_device=per_device, metrics=metrics)
    ctx = ApiContext(vault=vault, tokens=TokenStore(vault.engine), runner=runner, metrics=metrics,
                     scheduler=scheduler, scheduler_alive=scheduler_alive)
    metrics.api_queue_depth = lambda: runner.queue_depth
    metrics.in_flight = lambda: runner.in_flight
    if rate_limited is not None:
        metrics.rate_limited = rate_limited

    app = FastAPI(
        title="keyturn", version=_version(),
        description="Privileged-credential rotation: records, rotation profiles, schedules, rotations, "
                    "audit. Authenticate with `Authorization: Bearer <token>` (`keyturn token create`).",
        docs_url=None, redoc_url=None,  # one docs page, ours, under a strict CSP (`_add_docs`)
    )
    _add_docs(app)
    app.state.ctx = ctx
    for module in (records, reveal, profiles, schedules, rotations, accounts, audit, health):
        app.include_router(module.router)
    app.add_exception_handler(KeyturnError, _keyturn_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit, limit=max_body)
    app.add_middleware(RequestLog, metrics=metrics)
    app.add_middleware(SecurityHeaders)   # outermost of ours: 413s and 401s included
    from keyturn.console import mount  # the web console at /console/, on this same context
    mount(app)
    if scheduler is not None:
        attach_scheduler(app, scheduler, alive=scheduler_alive)
    return app


def attach_scheduler(app: FastAPI, scheduler: SchedulerLike, *,
                     alive: Callable[[], bool] | None = None) -> None:
    """Wire a scheduler created after the app (it needs the app's runner): reloads, readiness, metrics."""
    ctx: ApiContext = app.state.ctx
    ctx.scheduler = scheduler
    ctx.scheduler_alive = alive
    ctx.metrics.scheduler_queue_depth = scheduler.backlog  # due, waiting for a slot
    ctx.metrics.next_due = lambda: _earliest(scheduler)


def _earliest(scheduler: SchedulerLike) -> Any:
    due = scheduler.next_due()
    return min((d for _uid, d in due), default=None)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("keyturn")
    except PackageNotFoundError:
        return "0"


__all__ = ["ERROR_STATUS", "MAX_BODY", "SECURITY_HEADERS", "attach_scheduler", "create_app"]
