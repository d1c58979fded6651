"""Reveal: ``GET /reveal?record=REF`` (the form) and ``POST /reveal`` (the one console view that shows a
secret value).

Who may: the API's rule (`keyturn.api.routes.reveal.reveal_for`) — an admin any field of any record (an
earlier version too), a consumer the current value of a record its token's grants match; everyone else
and a record outside the grants get the API's audited 403. Every reveal is audited exactly as the API's
(``reveal``, the session's actor).

What more the console asks: re-authentication — the form takes the session's own API token again, so a
browser left signed in does not show secrets to whoever sits down at it. A wrong token is refused
(401, audited as ``console.reveal_denied``, counted against the client like a bad sign-in, nothing
revealed). The value travels only in the POST's answer (never in a URL), which is ``no-store``; the page
removes it after `SHOWN_FOR` seconds (``static/reveal.js``), and reloading does not resend the form
without the browser asking.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from keyturn.api.auth import Permission, context
from keyturn.api.routes.reveal import reveal_for
from keyturn.console.csrf import check_csrf, same
from keyturn.console.forms import read_form
from keyturn.console.render import render
from keyturn.console.session import ConsoleSession, require_session

router = APIRouter()

SHOWN_FOR = 30          # seconds the value stays on the page
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
REAUTH_FAILED = "That is not the token this session was opened with; nothing was revealed."


def _may_reveal(session: ConsoleSession) -> None:
    p = session.principal
    if not (p.can(Permission.REVEAL) or p.can(Permission.REVEAL_GRANTED)):
        raise HTTPException(403, f"role {p.role} may not reveal secrets")


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


@router.get("/reveal", include_in_schema=False)
async def reveal_form(
    request: Request, session: Annotated[ConsoleSession, Depends(require_session())],
    record: Annotated[str, Query(max_length=512)] = "",
    field: Annotated[str, Query(max_length=128)] = "password",
) -> Response:
    _may_reveal(session)
    return render(request, "reveal.html", {"record": record, "field": field, "error": "",
                                           "shown_for": SHOWN_FOR}, headers=NO_STORE)


@router.post("/reveal", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def reveal(request: Request, session: Annotated[ConsoleSession, Depends(require_session())]
                 ) -> Response:
    _may_reveal(session)
    ctx = context(request)
    form = await read_form(request)
    record = form.one("record").strip()[:512]
    field = form.one("field", "password").strip()[:128] or "password"
    version_text = form.one("version").strip()
    again = {"record": record, "field": field, "shown_for": SHOWN_FOR}
    if not record:
        return render(request, "reveal.html", {**again, "error": "Name the record (uid or title)."},
                      status_code=422, headers=NO_STORE)
    version = None
    if version_text:
        if not version_text.isdigit() or not 1 <= int(version_text) < 2**31:
            return render(request, "reveal.html", {**again, "error": "The version is a whole number from 1."},
                          status_code=422, headers=NO_STORE)
        version = int(version_text)
    client = _client(request)
    wait = ctx.auth_backoff.retry_after(client)
    if wait is not None:
        return render(request, "reveal.html", {
            **again, "error": f"Too many failed attempts from this address; try again in {wait} s."},
            status_code=429, headers={**NO_STORE, "Retry-After": str(wait)})
    token = form.one("token").strip()
    info = await ctx.db(ctx.tokens.authenticate, token) if token else None
    if info is None or not same(info.id, session.principal.token.id):
        ctx.auth_backoff.failed(client)
        await asyncio.to_thread(ctx.vault.audit.append, "console.reveal_denied", actor=session.actor,
                                details={"reason": "re-authentication failed", "client": client})
        return render(request, "reveal.html", {**again, "error": REAUTH_FAILED}, status_code=401,
                      headers=NO_STORE)
    uid, secret = await reveal_for(ctx, request, session.principal, record, field, version)
    return render(request, "reveal_shown.html", {
        "uid": uid, "field": field, "version": version, "value": secret.reveal(), "shown_for": SHOWN_FOR,
    }, headers=NO_STORE)


__all__ = ["SHOWN_FOR", "router"]
