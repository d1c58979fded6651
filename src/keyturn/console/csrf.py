"""CSRF protection for every state-changing console form: a synchronizer token.

Each session carries a random token (`ConsoleSession.csrf`); every form the console renders holds it in
a hidden ``csrf_token`` field (or, for scripted requests, the ``X-CSRF-Token`` header). `check_csrf`, a
dependency of every POST route, compares it in constant time: missing or wrong → 403 page, audited as
an `api.denied` like the API's refusals, and the route never runs, so nothing changes. The
``SameSite=Strict`` cookie already keeps other sites' forms from arriving signed in; the token is the
second lock.

Sign-in has no session yet: its form carries a pre-session token that must equal the
``keyturn_signin`` cookie set with the form (double submit; `presession_ok`), so another site cannot
sign a browser into someone else's token either.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Depends, Request

from keyturn.api.auth import context, forbid
from keyturn.console.forms import read_form
from keyturn.console.session import ConsoleSession, current_session

FIELD = "csrf_token"
HEADER = "x-csrf-token"
PRESESSION_COOKIE = "keyturn_signin"


def same(given: str, expected: str) -> bool:
    """Constant-time equality of two tokens (False when either is empty)."""
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


async def check_csrf(request: Request, session: ConsoleSession = Depends(current_session)) -> None:  # noqa: B008
    """FastAPI dependency for POST routes: the form's (or header's) token is the session's, else 403."""
    given = request.headers.get(HEADER, "")
    if not given:
        given = (await read_form(request)).one(FIELD)
    if not same(given, session.csrf):
        raise await forbid(context(request), request, session.principal,
                           "the form's CSRF token is missing or wrong")


def new_presession() -> str:
    return secrets.token_urlsafe(32)


def presession_ok(request: Request, given: str) -> bool:
    """The sign-in form's token equals its cookie (double submit)."""
    return same(given, request.cookies.get(PRESESSION_COOKIE, ""))


__all__ = ["FIELD", "HEADER", "PRESESSION_COOKIE", "check_csrf", "new_presession", "presession_ok", "same"]
