"""The console as a sub-application of the API app, mounted at ``/console`` (`mount`).

It shares the API's `ApiContext` (vault, token store, rotation runner, audit, denial budgets), so the
console and the API are one service with one set of roles and one audit log. Its own error handlers
answer in HTML (an error page, or a redirect to sign-in), its own middleware sets the console's headers
(`keyturn.console.security_headers`); the API's routes, handlers and JSON answers are untouched.
``GET /`` redirects to the console.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from keyturn.api.app import ERROR_STATUS
from keyturn.api.context import ApiContext
from keyturn.console.pages import ROUTERS
from keyturn.console.render import render
from keyturn.console.security_headers import ConsoleHeaders
from keyturn.console.session import HOME, PREFIX, SessionStore, SignInRequired, signin_url
from keyturn.errors import KeyturnError

log = logging.getLogger("keyturn.console")

TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed here",
          409: "Conflict", 413: "Too large", 415: "Unsupported form", 422: "Invalid input",
          429: "Too many attempts", 503: "Unavailable"}


async def _signin_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    url = signin_url(exc.next_path, exc.reason)
    if request.headers.get("hx-request"):
        # htmx follows no 3xx into a full page: tell it to navigate.
        return Response(status_code=401, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return render(request, "error.html", {"code": code, "title": TITLES.get(code, "Error"),
                                          "message": message}, status_code=code, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
    if exc.status_code == 403:
        detail = f"{detail}. Nothing was changed."
    keep = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "retry-after"}
    return error_page(request, exc.status_code, detail, keep)


async def _keyturn_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeyturnError)
    code = next((c for cls, c in ERROR_STATUS if isinstance(exc, cls)), 500)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if code >= 500:
        log.warning("console request failed: %s", type(exc).__name__)
    return error_page(request, code, message)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = ", ".join(".".join(str(p) for p in e.get("loc", ())[1:]) or "request" for e in exc.errors())
    return error_page(request, 422, f"invalid value for {fields}")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("console internal error (%s)", type(exc).__name__, exc_info=exc)
    return error_page(request, 500, "Something went wrong on the keyturn server; nothing more is shown "
                                    "here (see the server log).")


class _Route:
    """What the API's request log reads of a route: its template."""

    def __init__(self, path: str) -> None:
        self.path = path


class FullRouteNames:
    """Console requests reach the API's request log and metrics under their full route template
    (``/console/accounts``), not the sub-app's relative one (``/accounts`` is also an API route)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                path = getattr(scope.get("route"), "path", None)
                if not isinstance(path, str):
                    path = "/static" if isinstance(scope.get("endpoint"), StaticFiles) else "/unmatched"
                scope["route"] = _Route(PREFIX + path)


def build(ctx: ApiContext) -> FastAPI:
    """The console app over the API's context (mount it at `PREFIX`)."""
    settings = ctx.vault.settings
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="keyturn console")
    app.state.ctx = ctx
    app.state.sessions = SessionStore(idle=settings.console_idle_timeout,
                                      lifetime=settings.console_session_lifetime)
    app.state.insecure_cookie = settings.console_insecure_cookie
    for name in ROUTERS:
        app.include_router(importlib.import_module(name).router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_exception_handler(SignInRequired, _signin_required)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(KeyturnError, _keyturn_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(ConsoleHeaders)
    app.add_middleware(FullRouteNames)
    return app


def mount(api: FastAPI) -> FastAPI:
    """Mount the console on the API app at ``/console`` and send ``/`` there; returns the console app."""
    console = build(api.state.ctx)
    api.mount(PREFIX, console, name="console")

    @api.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(HOME, status_code=307)

    return console


__all__ = ["build", "error_page", "mount"]
