"""Accounts: the managed accounts as a searchable, filterable, paged table, and bulk "rotate now".

``GET /accounts`` reads `keyturn.accounts_view.list_accounts` — the view behind `keyturn status` and
``GET /accounts`` — with the same filters (the ``--filter`` language, outcome, site, flagged, plus tag);
a page filtered by metadata reads only its own accounts' journal and scheduler state. The search box
takes plain text (a title contains it) or a filter expression (``target=iosxe-ssh,title~sw00``); a bad
one is answered with the CLI's error text, inline.

``POST /accounts/rotate`` (operator or admin, CSRF) starts the selected accounts' rotations through
`keyturn.api.routes.rotations.start_rotations`, the path of ``POST /rotations``: every selected record is
resolved and checked first, and one refused record starts nothing. The answer lists the started
rotations, each linking to its live page.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.engine import Engine

from keyturn.accounts_view import NEVER, OUTCOMES, AccountList, AccountQuery, list_accounts
from keyturn.api.auth import Permission, context
from keyturn.api.routes.rotations import start_rotations
from keyturn.console.csrf import check_csrf
from keyturn.console.forms import read_form
from keyturn.console.render import render
from keyturn.console.session import PREFIX, ConsoleSession, require_session, safe_next
from keyturn.engine.journal import read_tx
from keyturn.errors import ConfigError, KeyturnError
from keyturn.sites import known_sites
from keyturn.targets.registry import kinds
from keyturn.vault.storage import RecordRow

router = APIRouter()

PER_PAGE = 50
MAX_SELECTED = 1000          # as POST /rotations
Reader = Annotated[ConsoleSession, Depends(require_session(permission=Permission.ROTATION_READ))]
Rotator = Annotated[ConsoleSession, Depends(require_session(permission=Permission.ROTATE))]


def filter_expression(q: str | None, target: str | None) -> str | None:
    """The ``--filter`` expression of the search box and the target choice. Plain text (no ``=``/``~``)
    searches titles; anything else is the filter language itself."""
    terms = []
    if q:
        if "=" in q or "~" in q:
            terms.append(q)
        elif "," in q:
            raise ConfigError("a comma separates filter terms: search plain text without one, or write "
                              "KEY=VALUE / KEY~TEXT terms (e.g. title~sw00,target=iosxe-ssh)")
        else:
            terms.append(f"title~{q}")
    if target:
        terms.append(f"target={target}")
    return ",".join(terms) or None


def titles(engine: Engine, uids: set[str]) -> dict[str, str]:
    """uid → title of `uids` (the page's resources), one statement."""
    if not uids:
        return {}
    with read_tx(engine) as conn:
        rows = conn.execute(sa.select(RecordRow.uid, RecordRow.title).where(RecordRow.uid.in_(uids)))
        return {uid: title for uid, title in rows}


def _page(engine: Engine, query: AccountQuery, offset: int) -> tuple[AccountList, dict[str, str]]:
    found = list_accounts(engine, query, limit=PER_PAGE, offset=offset)
    return found, titles(engine, {a.resource_uid for a in found.accounts if a.resource_uid})


def _choices(request: Request) -> dict[str, Any]:
    settings = context(request).vault.settings
    return {"targets": kinds(), "sites": known_sites(settings), "outcomes": (*OUTCOMES, NEVER)}


@router.get("/accounts", include_in_schema=False)
async def accounts(
    request: Request, _s: Reader,
    q: Annotated[str | None, Query(max_length=1024)] = None,
    target: Annotated[str | None, Query(max_length=64)] = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    flagged: Annotated[bool, Query()] = False,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    ctx = context(request)
    q, target, site, tag, outcome = (v.strip() or None if v is not None else None
                                     for v in (q, target, site, tag, outcome))
    params = {k: v for k, v in (("q", q), ("target", target), ("site", site), ("tag", tag),
                                ("outcome", outcome), ("flagged", "1" if flagged else None)) if v}
    error = ""
    found: AccountList | None = None
    resources: dict[str, str] = {}
    try:
        query = AccountQuery(filter=filter_expression(q, target), outcome=outcome, site=site, flagged=flagged,
                             tag=tag)
        query.check()
        found, resources = await ctx.db(_page, ctx.vault.engine, query, (page - 1) * PER_PAGE)
    except ConfigError as exc:
        error = str(exc)
    pages = max(1, -(-found.total // PER_PAGE)) if found is not None else 1

    def link(n: int) -> str:
        return f"{PREFIX}/accounts?" + urlencode({**params, "page": n})

    here = f"{PREFIX}/accounts" + (f"?{urlencode({**params, 'page': page})}" if params or page > 1 else "")
    return render(request, "accounts.html", {
        "found": found, "resources": resources, "error": error, "filtered": bool(params), "page": page,
        "params": {"q": q, "target": target, "site": site, "tag": tag, "outcome": outcome,
                   "flagged": flagged},
        "pages": pages, "prev": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < pages else None, "here": here, "per_page": PER_PAGE,
        "first": (page - 1) * PER_PAGE + 1, **_choices(request),
    }, status_code=422 if error else 200)


@router.post("/accounts/rotate", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def rotate_selected(request: Request, session: Rotator) -> Response:
    ctx = context(request)
    form = await read_form(request)
    chosen = list(dict.fromkeys(v for v in form.get("record", []) if v.strip()))
    back = safe_next(form.one("back") or f"{PREFIX}/accounts")
    error = ""
    started: list[Any] = []
    if not chosen:
        error = "select at least one account; nothing was started"
    elif len(chosen) > MAX_SELECTED:
        error = f"{len(chosen)} accounts selected; at most {MAX_SELECTED} at once — nothing was started"
    else:
        try:
            started = await start_rotations(ctx, session.actor, records=chosen)
        except KeyturnError as exc:
            error = f"{str(exc).splitlines()[0]} — nothing was started"
    return render(request, "accounts_rotate.html", {"started": started, "error": error, "back": back},
                  status_code=422 if error else 202)


__all__ = ["filter_expression", "router", "titles"]
