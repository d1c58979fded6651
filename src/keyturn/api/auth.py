"""Bearer-token authentication and the role → permission table.

Every route declares one `Permission` with ``Depends(require(Permission.X))``. The table below is the
whole authorisation policy:

    permission        admin  operator  auditor  consumer
    records:read        ✓       ✓         ✓               record metadata (secret values are never returned)
    records:write       ✓                                 create / edit / delete records
    rotation:read       ✓       ✓         ✓               profiles, schedules, rotation status, history
    rotation:write      ✓       ✓                         set rotation profiles and schedules
    rotate              ✓       ✓                         POST /rotations
    audit:read          ✓                 ✓               GET /audit
    reveal              ✓                                 POST /records/{ref}/reveal (audited)
    reveal:granted      ✓                           ✓     the same, current values of granted records only

Operators run the rotations (and decide how and when) but cannot create, delete or read secrets;
auditors read everything except secret values and change nothing. A consumer (automation that logs in
with the accounts: backups, Ansible, `keyturn exec`) reveals the current values of the records its
token's grants match (`keyturn.consumers`) and nothing else: a record outside them, or one that does not
exist, is the same 403 (`forbid`), so a consumer learns nothing about records it was not given.

A missing, malformed, unknown, revoked or expired token → 401 (with ``WWW-Authenticate: Bearer``); a
valid token without the permission → 403. A client that presented too many bad tokens in the last
minute → 429 with ``Retry-After``, before its token is even looked at (`keyturn.api.denials.AuthBackoff`).
Denials are appended to the audit log as `api.denied` (method, path, reason, token id/role when known
— never the token itself) up to a per-client budget (`keyturn.api.denials.DenialBudget`; 403s per
client and token), past which they are counted and reported as ``suppressed`` on the client's next
audited denial.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from keyturn.api.tokens import Role, TokenInfo

if TYPE_CHECKING:
    from keyturn.api.context import ApiContext

log = logging.getLogger("keyturn.api.auth")


class Permission(enum.StrEnum):
    RECORDS_READ = "records:read"
    RECORDS_WRITE = "records:write"
    ROTATION_READ = "rotation:read"
    ROTATION_WRITE = "rotation:write"
    ROTATE = "rotate"
    AUDIT_READ = "audit:read"
    REVEAL = "reveal"
    REVEAL_GRANTED = "reveal:granted"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset({P.RECORDS_READ, P.ROTATION_READ, P.ROTATION_WRITE, P.ROTATE}),
    Role.AUDITOR: frozenset({P.RECORDS_READ, P.ROTATION_READ, P.AUDIT_READ}),
    Role.CONSUMER: frozenset({P.REVEAL_GRANTED}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's metadata; `actor` is what the audit log records."""

    token: TokenInfo

    @property
    def role(self) -> Role:
        return self.token.role

    @property
    def actor(self) -> str:
        return f"api:{self.token.name}#{self.token.id}"

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


_bearer = HTTPBearer(auto_error=False, description="API token from `keyturn token create`")


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


async def _deny(ctx: ApiContext, request: Request, code: int, reason: str,
                token: TokenInfo | None = None, *, retry_after: int | None = None) -> HTTPException:
    details: dict[str, object] = {"method": request.method, "path": request.url.path, "reason": reason,
                                  "status": code}
    if token is not None:
        details.update(token_id=token.id, token_name=token.name, role=str(token.role))
    client = _client(request)
    if request.client is not None:
        details["client"] = client
    actor = f"api:{token.name}#{token.id}" if token is not None else "api:anonymous"
    # 403s carry a valid token: budget them per token too, so one noisy token hides no other's denials.
    skipped = ctx.denials.admit(client if token is None else f"{client} token {token.id}")
    if skipped is not None:
        if skipped:
            details["suppressed"] = skipped
        await asyncio.to_thread(ctx.vault.audit.append, "api.denied", actor=actor, details=details)
    ctx.metrics.denied(code)
    log.warning("request denied: %s", reason, extra={"status": code, "path": request.url.path,
                                                        "actor": actor})
    headers: dict[str, str] | None = None
    message = reason
    if code == status.HTTP_401_UNAUTHORIZED:
        headers, message = {"WWW-Authenticate": "Bearer"}, "authentication required"
    elif retry_after is not None:
        headers = {"Retry-After": str(retry_after)}
    return HTTPException(status_code=code, detail=message, headers=headers)


async def forbid(ctx: ApiContext, request: Request, principal: Principal, reason: str) -> HTTPException:
    """A 403 for an authenticated caller a route refuses after looking (a consumer outside its grants),
    audited as `api.denied` like every denial; raise what it returns."""
    return await _deny(ctx, request, status.HTTP_403_FORBIDDEN, reason, principal.token)


def require(permission: Permission, *alternatives: Permission) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the authenticated `Principal` holding `permission` (or one of
    `alternatives`), else 401 / 403."""
    wanted = (permission, *alternatives)

    async def dependency(
        request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal:
        ctx = context(request)
        if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
            raise await _deny(ctx, request, status.HTTP_401_UNAUTHORIZED, "missing bearer token")
        wait = ctx.auth_backoff.retry_after(_client(request))
        if wait is not None:  # decided before the token is looked at: a guesser learns nothing here
            raise await _deny(ctx, request, status.HTTP_429_TOO_MANY_REQUESTS,
                              f"too many failed authentications from this client; retry in {wait} s",
                              retry_after=wait)
        token = creds.credentials
        info = await asyncio.to_thread(ctx.tokens.authenticate, token)
        if info is None:
            ctx.auth_backoff.failed(_client(request))
            why = await asyncio.to_thread(ctx.tokens.classify, token)
            raise await _deny(ctx, request, status.HTTP_401_UNAUTHORIZED, f"{why} token")
        principal = Principal(info)
        if not any(principal.can(p) for p in wanted):
            raise await _deny(ctx, request, status.HTTP_403_FORBIDDEN,
                              f"role {info.role} lacks permission {permission}", info)
        request.state.actor = principal.actor
        return principal

    return dependency


__all__ = ["ROLE_PERMISSIONS", "Permission", "Principal", "context", "forbid", "require"]
