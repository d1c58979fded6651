"""Console sessions: sign-in exchanges a credential for a server-side session named by a cookie.

A session id is 32 random bytes (URL-safe base64) that exists only in the browser's cookie; the server
keeps sessions in memory keyed by the id's SHA-256, so nothing it holds opens a session. A session
holds the `Principal` (the same object the API authorises with: actor, role, grants, token id), how it
was opened (``token`` today; an OIDC `Authenticator` adds another method, not another session kind),
its CSRF token (`keyturn.console.csrf`) and one-shot flash messages.

Expiry: after ``console_idle_timeout`` seconds without a request and ``console_session_lifetime``
seconds after sign-in, whichever comes first (settings; defaults 15 min and 8 h). Every request re-asks
the session's `Authenticator` whether its credential still holds: a revoked or expired token ends every
session it opened on their next request. Sessions live in the serving process: a restart signs everyone
out, which is the safe direction.

The cookie is ``HttpOnly; SameSite=Strict; Secure; Path=/console``. `Secure` means the browser sends it
over HTTPS only, so serve the console with TLS (``keyturn serve --cert/--key``, or a TLS proxy in
front); browsers treat ``http://127.0.0.1`` and ``http://localhost`` as secure origins, so the default
loopback-only service works locally without TLS. ``KEYTURN_CONSOLE_INSECURE_COOKIE=1`` drops `Secure`
for HTTP clients that do not (test tools on plain HTTP); keyturn never guesses it from the request
(behind a TLS proxy every request looks like plain HTTP, and a guess there would send the cookie in
clear elsewhere).

Pages depend on `require_session(...)`: the session, or a redirect to sign-in that remembers the page
(`SignInRequired`), or a 403 page when the role lacks the permission (audited as the API's denials).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request

from keyturn.api.auth import Permission, Principal, context, forbid
from keyturn.api.context import ApiContext
from keyturn.api.tokens import Role
from keyturn.errors import KeyturnError

PREFIX = "/console"
COOKIE = "keyturn_console"
HOME = PREFIX + "/"
SIGNIN = PREFIX + "/signin"
MAX_SESSIONS = 10_000

# `require_session(min_role=...)`: roles by rank. Auditors read what operators read and change nothing;
# use `permission=` where the API's table is not a ladder (audit:read is the auditor's, not the operator's).
ROLE_RANK = {Role.CONSUMER: 0, Role.AUDITOR: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


class SignInRequired(KeyturnError):
    """No valid session: answered with a redirect to the sign-in page that comes back to `next`."""

    def __init__(self, next_path: str, reason: str = "") -> None:
        super().__init__(reason or "sign in to continue")
        self.next_path = next_path
        self.reason = reason


@dataclass
class ConsoleSession:
    """One signed-in browser (see the module docstring). `key` is the SHA-256 of the cookie's id."""

    key: str
    principal: Principal
    method: str
    csrf: str
    created: float
    seen: float
    flashes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def actor(self) -> str:
        return self.principal.actor

    def flash(self, message: str, kind: str = "info") -> None:
        """A message shown once on the next rendered page (kind: info, ok, error)."""
        self.flashes.append((kind, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        out, self.flashes = self.flashes, []
        return out


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore:
    """Sessions in memory, keyed by the SHA-256 of their id; bounded (oldest dropped first).

    `clock` (seconds, monotonic) is injectable so expiry is tested without waiting."""

    def __init__(self, *, idle: float = 900.0, lifetime: float = 28_800.0, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: OrderedDict[str, ConsoleSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal: Principal, method: str) -> tuple[str, ConsoleSession]:
        """A new session; returns the id for the cookie (never stored) and the session."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        session = ConsoleSession(key=_key(session_id), principal=principal, method=method,
                                 csrf=secrets.token_urlsafe(32), created=now, seen=now)
        self._sessions[session.key] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str) -> ConsoleSession | None:
        """The live session named by `session_id` (its idle clock restarts), else None; an expired one
        is dropped."""
        if not session_id or len(session_id) > 128:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > self.idle or now - session.created > self.lifetime:
            del self._sessions[key]
            return None
        session.seen = now
        return session

    def destroy(self, session: ConsoleSession) -> None:
        self._sessions.pop(session.key, None)

    def destroy_token(self, token_id: str) -> int:
        """End every session opened with token `token_id`; how many."""
        gone = [k for k, s in self._sessions.items() if s.principal.token.id == token_id]
        for k in gone:
            del self._sessions[k]
        return len(gone)


# --- authenticators ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignInResult:
    """A `Principal`, or None with why not (for the audit entry; never the credential)."""

    principal: Principal | None
    reason: str = ""


class Authenticator(Protocol):
    """How a credential becomes a `Principal`. The token form is one; OIDC adds another (its own
    routes for the redirect dance, then `SessionStore.create(principal, "oidc")`) without touching the
    session, CSRF or pages."""

    method: str

    async def sign_in(self, ctx: ApiContext, form: Mapping[str, str]) -> SignInResult: ...

    async def still_valid(self, ctx: ApiContext, principal: Principal) -> bool: ...


class TokenAuthenticator:
    """Sign-in with an API token (`keyturn token create`): the same token store, roles and grants as
    the API's bearer tokens."""

    method = "token"

    async def sign_in(self, ctx: ApiContext, form: Mapping[str, str]) -> SignInResult:
        token = form.get("token", "").strip()
        if not token:
            return SignInResult(None, "missing token")
        info = await ctx.db(ctx.tokens.authenticate, token)
        if info is None:
            why = await ctx.db(ctx.tokens.classify, token)
            return SignInResult(None, f"{why} token")
        return SignInResult(Principal(info))

    async def still_valid(self, ctx: ApiContext, principal: Principal) -> bool:
        info = await ctx.db(ctx.tokens.get, principal.token.id)
        return info is not None and info.active(datetime.now(UTC))


AUTHENTICATORS: dict[str, Authenticator] = {TokenAuthenticator.method: TokenAuthenticator()}


# --- request side ------------------------------------------------------------------------------------


def store(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.sessions
    return sessions


def safe_next(value: str | None) -> str:
    """`value` when it is a path of this console (no scheme, host, backslash or ``..``), else the
    dashboard: `next=` never sends anyone to another site."""
    if not value or len(value) > 2048 or "\\" in value or any(ord(c) < 0x20 for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not (parts.path == PREFIX or parts.path.startswith(HOME)) \
            or ".." in parts.path.split("/") or value.startswith("//") or parts.path == SIGNIN:
        return HOME
    return value


def signin_url(next_path: str, reason: str = "") -> str:
    url = f"{SIGNIN}?next={quote(safe_next(next_path), safe='/')}"
    return url + ("&expired=1" if reason else "")


def _here(request: Request) -> str:
    """The page to come back to: this one for a GET, the console home after a refused POST."""
    if request.method != "GET":
        return HOME
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def current_session(request: Request) -> ConsoleSession:
    """The request's live session (FastAPI dependency, cached per request), else `SignInRequired`."""
    found = getattr(request.state, "console_session", None)
    if isinstance(found, ConsoleSession):
        return found
    cookie = request.cookies.get(COOKIE, "")
    session = store(request).get(cookie) if cookie else None
    if session is None:
        raise SignInRequired(_here(request), "your session has ended; sign in again" if cookie else "")
    ctx = context(request)
    authenticator = AUTHENTICATORS.get(session.method)
    if authenticator is None or not await authenticator.still_valid(ctx, session.principal):
        ended = store(request).destroy_token(session.principal.token.id)
        await asyncio.to_thread(ctx.vault.audit.append, "console.session_ended", actor=session.actor,
                                details={"reason": "token revoked or expired", "sessions": ended})
        raise SignInRequired(_here(request), "the token of this session was revoked or has expired")
    request.state.console_session = session
    request.state.actor = session.actor      # the request log's actor, as for the API
    return session


def require_session(min_role: str | None = None, *, permission: Permission | None = None
                    ) -> Callable[..., Awaitable[ConsoleSession]]:
    """A FastAPI dependency: the live `ConsoleSession` whose role is at least `min_role` (by
    `ROLE_RANK`) and holds `permission` (the API's table, `keyturn.api.auth`); no session →
    redirect to sign-in (the page remembered), too low → 403 page, audited as `api.denied`."""
    rank = ROLE_RANK[Role(min_role)] if min_role is not None else None

    async def dependency(request: Request,
                         session: ConsoleSession = Depends(current_session)) -> ConsoleSession:  # noqa: B008
        p = session.principal
        reason = ""
        if rank is not None and ROLE_RANK[p.role] < rank:
            reason = f"role {p.role} may not do this (needs {min_role} or above)"
        elif permission is not None and not p.can(permission):
            reason = f"role {p.role} lacks permission {permission}"
        if reason:
            raise await forbid(context(request), request, p, reason)
        return session

    return dependency


__all__ = ["AUTHENTICATORS", "COOKIE", "HOME", "PREFIX", "ROLE_RANK", "SIGNIN", "Authenticator",
           "ConsoleSession", "SessionStore", "SignInRequired", "SignInResult", "TokenAuthenticator",
           "current_session", "require_session", "safe_next", "signin_url", "store"]
