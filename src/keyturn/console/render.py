"""The console's Jinja2 environment and `render`, the one way a page becomes a response.

    return render(request, "accounts.html", {"page": page}, status_code=200)

`render` adds to every template: ``request``, ``session`` (or None before sign-in), ``principal``,
``csrf_token`` (put it in every POST form: ``{{ csrf_field() }}``), ``nav`` (the links the role may
use, the current one marked), ``flashes`` (one-shot messages, consumed), ``can(permission)``
(``can("rotate")``: the API's permission table) and ``static(name)`` (a static file's URL, versioned so a
new release is fetched). Autoescaping is on for every template: a record title is text, never markup.
Filters: ``when`` (a datetime as ``2026-01-31 08:00 UTC``, ``-`` for None), ``ago`` (``3 min ago``),
``num`` (``10,000``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from keyturn.api.auth import Permission
from keyturn.console.csrf import FIELD
from keyturn.console.session import PREFIX, ConsoleSession

STATIC = f"{PREFIX}/static"

# (label, path under /console, permission needed to see the link; None: any signed-in role)
NAV: tuple[tuple[str, str, Permission | None], ...] = (
    ("Dashboard", "/", None),
    ("Accounts", "/accounts", Permission.ROTATION_READ),
    ("Audit", "/audit", Permission.AUDIT_READ),
    ("Schedules", "/schedules", Permission.ROTATION_READ),
    ("Profiles", "/profiles", Permission.ROTATION_READ),
)


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds >= size:
            text = f"{int(seconds // size)} {unit}"
            break
    else:
        text = f"{int(seconds)} s"
    return f"in {text}" if future else f"{text} ago"


@cache
def _static_version(name: str) -> str:
    try:
        data = files("keyturn.console").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return "0"
    return hashlib.sha256(data).hexdigest()[:12]


def static(name: str) -> str:
    return f"{STATIC}/{name}?v={_static_version(name)}"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("keyturn.console", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["ago"] = ago
    env.filters["num"] = "{:,}".format
    env.globals["static"] = static
    env.globals["PREFIX"] = PREFIX
    return env


def _nav(request: Request, session: ConsoleSession | None) -> list[dict[str, Any]]:
    if session is None:
        return []
    path = request.url.path
    out = []
    for label, rel, permission in NAV:
        if permission is not None and not session.principal.can(permission):
            continue
        href = PREFIX + rel
        current = path == href if rel == "/" else path == href or path.startswith(href + "/")
        out.append({"label": label, "href": href, "current": current})
    return out


def render(request: Request, template_name: str, context: Mapping[str, Any] | None = None,
           status_code: int = 200, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """`template_name` rendered with `context` plus the common names (module docstring)."""
    session = getattr(request.state, "console_session", None)
    session = session if isinstance(session, ConsoleSession) else None
    token = session.csrf if session is not None else ""

    def can(permission: str) -> bool:
        return session is not None and session.principal.can(Permission(permission))

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, escape(token))

    values: dict[str, Any] = {
        "request": request, "session": session, "principal": session.principal if session else None,
        "csrf_token": token, "csrf_field": csrf_field, "nav": _nav(request, session), "can": can,
        "flashes": session.take_flashes() if session is not None else [],
    }
    values.update(context or {})
    body = environment().get_template(template_name).render(values)
    return HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))


__all__ = ["NAV", "STATIC", "ago", "environment", "render", "static", "when"]
