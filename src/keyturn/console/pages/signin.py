"""Sign-in and sign-out.

``GET /signin`` shows the token form (with a pre-session CSRF token, `keyturn.console.csrf`);
``POST /signin`` checks it through the `Authenticator` (`keyturn.console.session`), opens a new session
(a fresh id every time: a session id planted before sign-in is worth nothing) and goes back to ``next``
— a console path, never another site. Attempts are rate-limited per client address with the API's
bad-token back-off (one budget for both doors) and audited: ``console.signin`` (token id, name, role),
``console.signin_failed`` (why: unknown / revoked / expired token; never the token), the latter within
the API's per-client denial budget. ``POST /signout`` (CSRF-checked) ends the session.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from keyturn.api.auth import context
from keyturn.console.csrf import PRESESSION_COOKIE, check_csrf, new_presession, presession_ok
from keyturn.console.forms import read_form
from keyturn.console.render import render
from keyturn.console.session import (
    AUTHENTICATORS,
    COOKIE,
    PREFIX,
    SIGNIN,
    ConsoleSession,
    TokenAuthenticator,
    current_session,
    safe_next,
    store,
)

router = APIRouter()
PRESESSION_MAX_AGE = 900


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None = None
                ) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="strict",
                        secure=not request.app.state.insecure_cookie)


def _form(request: Request, *, next_path: str, error: str = "", status_code: int = 200,
          headers: dict[str, str] | None = None) -> Response:
    token = new_presession()
    response = render(request, "signin.html", {"next": next_path, "error": error, "presession": token,
                                               "expired": request.query_params.get("expired") == "1"},
                      status_code=status_code, headers=headers)
    _set_cookie(request, response, PRESESSION_COOKIE, token, PRESESSION_MAX_AGE)
    return response


@router.get("/signin", include_in_schema=False)
async def signin_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    session = store(request).get(request.cookies.get(COOKIE, ""))
    if session is not None:
        return RedirectResponse(next_path, status_code=303)
    return _form(request, next_path=next_path)


@router.post("/signin", include_in_schema=False)
async def signin(request: Request) -> Response:
    ctx = context(request)
    form = await read_form(request)
    next_path = safe_next(form.one("next"))
    client = _client(request)
    if not presession_ok(request, form.one("presession")):
        return _form(request, next_path=next_path, status_code=403,
                     error="The sign-in form expired or came from another site; try again.")
    wait = ctx.auth_backoff.retry_after(client)
    if wait is not None:  # before the token is looked at, as the API does
        return _form(request, next_path=next_path, status_code=429, headers={"Retry-After": str(wait)},
                     error=f"Too many failed sign-ins from this address; try again in {wait} s.")
    authenticator = AUTHENTICATORS[TokenAuthenticator.method]
    result = await authenticator.sign_in(ctx, {"token": form.one("token")})
    if result.principal is None:
        ctx.auth_backoff.failed(client)
        skipped = ctx.denials.admit(client)
        if skipped is not None:
            details: dict[str, object] = {"reason": result.reason, "client": client,
                                          "method": authenticator.method}
            if skipped:
                details["suppressed"] = skipped
            await asyncio.to_thread(ctx.vault.audit.append, "console.signin_failed",
                                    actor="console:anonymous", details=details)
        return _form(request, next_path=next_path, status_code=401,
                     error="That token was not accepted (unknown, revoked or expired).")
    old = store(request).get(request.cookies.get(COOKIE, ""))
    if old is not None:
        store(request).destroy(old)
    session_id, _session = store(request).create(result.principal, authenticator.method)
    p = result.principal
    await asyncio.to_thread(ctx.vault.audit.append, "console.signin", actor=p.actor, details={
        "token_id": p.token.id, "token_name": p.token.name, "role": str(p.role), "client": client,
        "method": authenticator.method})
    request.state.actor = p.actor
    response = RedirectResponse(next_path, status_code=303)
    _set_cookie(request, response, COOKIE, session_id)
    response.delete_cookie(PRESESSION_COOKIE, path=PREFIX, secure=not request.app.state.insecure_cookie,
                           httponly=True, samesite="strict")
    return response


@router.post("/signout", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def signout(request: Request, session: Annotated[ConsoleSession, Depends(current_session)]
                  ) -> Response:
    store(request).destroy(session)
    await asyncio.to_thread(context(request).vault.audit.append, "console.signout", actor=session.actor,
                            details={"token_id": session.principal.token.id})
    response = RedirectResponse(SIGNIN, status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX, secure=not request.app.state.insecure_cookie,
                           httponly=True, samesite="strict")
    return response


__all__ = ["router"]
