"""Schedules: every scheduled account with its next due time, and setting, clearing and resetting one.

``GET /schedules`` lists `keyturn.scheduler.assign.schedule_rows` (what `keyturn schedule list` prints),
paged; ``?record=REF`` fills the form with that record's schedule. Changes (operator or admin, CSRF) go
through the functions `keyturn schedule set|clear|reset` and ``PUT/DELETE /records/{ref}/schedule``
call — `set_schedule`, `clear_schedule`, `reset_attention` — so the validation, the error texts, the
stored form and the audit entries are theirs; a refused form is shown again with the CLI's error next
to the field it concerns, and nothing is saved. The running scheduler reloads after each change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from keyturn.api.auth import Permission, context
from keyturn.console.csrf import check_csrf
from keyturn.console.forms import Form, read_form
from keyturn.console.render import render
from keyturn.console.session import PREFIX, ConsoleSession, require_session
from keyturn.errors import ConfigError, KeyturnError
from keyturn.scheduler.assign import clear_schedule, reset_attention, schedule_rows, set_schedule
from keyturn.scheduler.schedules import META_KEY
from keyturn.vault import Vault

router = APIRouter()

PER_PAGE = 50
MAX_SPEC = 512                       # as PUT /records/{ref}/schedule
FIELDS = ("record", "spec", "tz", "window", "jitter")
Reader = Annotated[ConsoleSession, Depends(require_session(permission=Permission.ROTATION_READ))]
Writer = Annotated[ConsoleSession, Depends(require_session(permission=Permission.ROTATION_WRITE))]


def field_of(message: str) -> str:
    """Which form field an error message is about (for aria-invalid and placing the message)."""
    lowered = message.lower()
    for word, name in (("record", "record"), ("zone", "tz"), ("window", "window"), ("jitter", "jitter")):
        if word in lowered:
            return name
    return "spec"


def _current(vault: Vault, ref: str) -> dict[str, str]:
    """The form values of `ref`'s stored schedule (empty ones when it has none)."""
    rec = vault.get(ref)
    raw = rec.meta.get(META_KEY)
    values = {"record": rec.title, "spec": "", "tz": "", "window": "", "jitter": ""}
    if isinstance(raw, dict):
        for key in ("spec", "tz", "window", "jitter"):
            value = raw.get(key)
            if isinstance(value, str):
                values[key] = value
            elif isinstance(value, dict):   # a Keeper schedule object
                import json
                values[key] = json.dumps(value)
    return values


async def _page(request: Request, *, values: dict[str, str], error: str = "", page: int = 1,
                status_code: int = 200) -> Response:
    ctx = context(request)
    rows = await ctx.db(schedule_rows, ctx.vault)
    pages = max(1, -(-len(rows) // PER_PAGE))
    page = min(page, pages)
    return render(request, "schedules.html", {
        "rows": rows[(page - 1) * PER_PAGE:page * PER_PAGE], "total": len(rows), "page": page, "pages": pages,
        "values": values, "error": error, "error_field": field_of(error) if error else "",
    }, status_code=status_code)


@router.get("/schedules", include_in_schema=False)
async def schedules(request: Request, _s: Reader,
                    record: Annotated[str | None, Query(max_length=512)] = None,
                    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> Response:
    ctx = context(request)
    values = dict.fromkeys(FIELDS, "")
    error = ""
    if record:
        try:
            values = await ctx.db(_current, ctx.vault, record)
        except KeyturnError as exc:
            values["record"], error = record, str(exc)
    return await _page(request, values=values, error=error, page=page, status_code=422 if error else 200)


def _values(form: Form) -> dict[str, str]:
    return {name: form.one(name).strip() for name in FIELDS}


@router.post("/schedules", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def set_(request: Request, session: Writer) -> Response:
    ctx = context(request)
    values = _values(await read_form(request))
    try:
        if not values["record"]:
            raise ConfigError("give the record (uid or unique title) to schedule")
        if not values["spec"]:
            raise ConfigError("give a schedule: cron (5 fields), Quartz (6-7 fields), 'every 30d', or "
                              "Keeper schedule JSON")
        if len(values["spec"]) > MAX_SPEC:
            raise ConfigError("schedule spec is too long")
        sched = await ctx.db(set_schedule, ctx.vault, values["record"], values["spec"],
                             tz=values["tz"] or None, window=values["window"] or None,
                             jitter=values["jitter"] or None, actor=session.actor, now=datetime.now(UTC))
        title = (await ctx.db(ctx.vault.get, values["record"])).title
    except KeyturnError as exc:
        return await _page(request, values=values, error=str(exc).splitlines()[0], status_code=422)
    ctx.reload_scheduler()
    session.flash(f"schedule set on {title}: {sched.describe()}", "ok")
    return RedirectResponse(f"{PREFIX}/schedules", status_code=303)


async def _one(request: Request, session: ConsoleSession, action: Any, done: str, nothing: str) -> Response:
    ctx = context(request)
    ref = (await read_form(request)).one("record").strip()
    try:
        title = (await ctx.db(ctx.vault.get, ref)).title
        changed = await ctx.db(action, ctx.vault, ref, actor=session.actor)
    except KeyturnError as exc:
        return await _page(request, values=dict.fromkeys(FIELDS, ""), error=str(exc).splitlines()[0],
                           status_code=422)
    ctx.reload_scheduler()
    session.flash((done if changed else nothing).format(title=title), "ok" if changed else "info")
    return RedirectResponse(f"{PREFIX}/schedules", status_code=303)


@router.post("/schedules/clear", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def clear(request: Request, session: Writer) -> Response:
    return await _one(request, session, clear_schedule, "schedule cleared on {title}: rotated on demand only",
                      "{title} had no schedule")


@router.post("/schedules/reset", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def reset(request: Request, session: Writer) -> Response:
    return await _one(request, session, reset_attention, "{title}: needs-attention cleared; the scheduler "
                      "serves it again", "{title} did not need attention")


__all__ = ["field_of", "router"]
