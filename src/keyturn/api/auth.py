"""Bearer-token authentication and the role → permission table.

Every route declares one `Permission` with ``Depends(require(Permission.X))``. The table below is the
whole authorisation policy:

    permission        admin  operator  auditor
    records:read        ✓       ✓         ✓      record metadata (secret values are never returned)
    records:write       ✓                        create / edit / delete records
    rotation:read       ✓       ✓         ✓      profiles, schedules, rotation status, history
    rotation:write      ✓       ✓                set rotation profiles and schedules
    rotate              ✓       ✓                POST /rotations
    audit:read          ✓                 ✓      GET /audit
    reveal              ✓                        POST /records/{ref}/reveal (audited)

Operators run the rotations (and decide how and when) but cannot create, delete or read secrets;
auditors read everything except secret values and change nothing.

A missing, malformed, unknown, revoked or expired token → 401 (with ``WWW-Authenticate: Bearer``); a
valid token without the permission → 403. Denials are appended to the audit log as `api.denied`
(method, path, reason, token id/role when known — never the token itself): every 403, and 401s up to
a per-client budget (`keyturn.api.denials`), past which they are counted and reported as
``suppressed`` on the client's next audited denial.
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


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset({P.RECORDS_READ, P.ROTATION_READ, P.ROTATION_WRITE, P.ROTATE}),
    Role.AUDITOR: frozenset({P.RECORDS_READ, P.ROTATION_READ, P.AUDIT_READ}),
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


async def _deny(ctx: ApiContext, request: Request, code: int, reason: str,
                token: TokenInfo | None = None) -> HTTPException:
    details: dict[str, object] = {"method": request.method, "path": request.url.path, "reason": reason,
                                  "status": code}
    if token is not None:
        details.update(token_id=token.id, token_name=token.name, role=str(token.role))
    client = request.client
    if client is not None:
        details["client"] = client.host
    actor = f"api:{token.name}#{token.id}" if token is not None else "api:anonymous"
    skipped = 0 if token is not None else ctx.denials.admit(client.host if client is not None else "?")
    if skipped is not None:
        if skipped:
            details["suppressed"] = skipped
        await asyncio.to_thread(ctx.vault.audit.append, "api.denied", actor=actor, details=details)
    ctx.metrics.denied(code)
    log.warning("request denied: %s", reason, extra={"status": code, "path": request.url.path,
                                                        "actor": actor})
    headers = {"WWW-Authenticate": "Bearer"} if code == status.HTTP_401_UNAUTHORIZED else None
    message = "authentication required" if code == status.HTTP_401_UNAUTHORIZED else reason
    return HTTPException(status_code=code, detail=message, headers=headers)


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the authenticated `Principal` holding `permission`, else 401 / 403."""

    async def dependency(
        request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal:
        ctx = context(request)
        if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
            raise await _deny(ctx, request, status.HTTP_401_UNAUTHORIZED, "missing bearer token")
        token = creds.credentials
        info = await asyncio.to_thread(ctx.tokens.authenticate, token)
        if info is None:
            why = await asyncio.to_thread(ctx.tokens.classify, token)
            raise await _deny(ctx, request, status.HTTP_401_UNAUTHORIZED, f"{why} token")
        principal = Principal(info)
        if not principal.can(permission):
            raise await _deny(ctx, request, status.HTTP_403_FORBIDDEN,
                              f"role {info.role} lacks permission {permission}", info)
        request.state.actor = principal.actor
        return principal

    return dependency


__all__ = ["ROLE_PERMISSIONS", "Permission", "Principal", "context", "require"]
