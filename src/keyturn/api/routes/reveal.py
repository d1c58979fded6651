"""`POST /records/{ref}/reveal`: the one route that returns a secret value (audited).

POST, not GET: a reveal changes state (an audit entry) and must never be cached or prefetched. The
response carries ``Cache-Control: no-store``. ``version`` reveals an earlier version (as `keyturn reveal
--version N`): an admin can read back a secret a rotation replaced, to undo a mistake.

An admin reveals any field of any record (``login`` and plain custom fields too, as `keyturn exec`
reads them). A consumer token (`keyturn.consumers`) reveals the current value of a record
its grants match — a secret field, ``login`` or a plain custom field — and gets the same 403 for a
record outside its grants, a record that does not exist and a title several records share, audited
as `api.denied`: the answer says nothing about records it was not given. Earlier versions are not a
consumer's to read (403). Every reveal is audited (``reveal``) with the token's name as actor.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from keyturn.api.auth import Permission, Principal, context, forbid, require
from keyturn.api.context import ApiContext
from keyturn.consumers import granted, read_field
from keyturn.errors import AmbiguousRecord, RecordNotFound, VaultError
from keyturn.secret import Secret
from keyturn.vault import Vault

router = APIRouter(prefix="/records", tags=["reveal"])
log = logging.getLogger("keyturn.api.reveal")

NOT_GRANTED = "this token has no grant for that record"
CURRENT_ONLY = "consumer tokens reveal current values only"


class RevealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(default="password", min_length=1, max_length=128,
                       description="secret field: type, label, or custom label (consumers: also login or "
                                   "a plain custom field)")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="an earlier version (GET /records/{ref}/history lists them)")


class RevealOut(BaseModel):
    uid: str
    field: str
    value: str
    version: int | None = None


def _granted_uid(vault: Vault, ref: str, grants: tuple[str, ...]) -> str | None:
    """The uid of `ref` when the grants match it; None for a record outside them, a missing or an
    ambiguous one, or one that cannot be read — all alike to the caller."""
    if not grants:
        return None
    try:
        uid, meta = vault.meta(ref)
    except VaultError as exc:
        if not isinstance(exc, (RecordNotFound, AmbiguousRecord)):
            log.warning("consumer reveal: record %s unreadable: %s", ref[:80], type(exc).__name__)
        return None
    return uid if granted(grants, uid, meta) else None


@router.post("/{ref}/reveal", response_model=RevealOut, summary="Reveal a secret value (audited)")
async def reveal(
    ref: str, ctx: Annotated[ApiContext, Depends(context)], request: Request,
    p: Annotated[Principal, Depends(require(Permission.REVEAL, Permission.REVEAL_GRANTED))],
    response: Response, body: RevealIn | None = None,
) -> RevealOut:
    ask = body or RevealIn()
    uid, secret = await reveal_for(ctx, request, p, ref, ask.field, ask.version)
    response.headers["Cache-Control"] = "no-store"
    return RevealOut(uid=uid, field=ask.field, value=secret.reveal(), version=ask.version)


async def reveal_for(ctx: ApiContext, request: Request, p: Principal, ref: str, field: str,
                     version: int | None = None) -> tuple[str, Secret]:
    """(uid, value) of `field` of `ref` for `p` under the rules of the module docstring, audited as
    ``reveal``; a consumer outside its grants (or asking for a `version`) gets the audited 403 raised.
    The API route and the console's reveal view both call it."""
    if p.can(Permission.REVEAL):
        uid = await ctx.db(ctx.vault.resolve, ref)
        if version is None:
            return uid, await ctx.db(read_field, ctx.vault, uid, field, actor=p.actor)
        return uid, await ctx.db(ctx.vault.reveal, uid, field=field, actor=p.actor, version=version)
    if not p.can(Permission.REVEAL_GRANTED):
        raise await forbid(ctx, request, p, f"role {p.role} lacks permission {Permission.REVEAL}")
    if version is not None:  # decided before the record is looked up: no hint either way
        raise await forbid(ctx, request, p, CURRENT_ONLY)
    found = await ctx.db(_granted_uid, ctx.vault, ref, p.token.grants)
    if found is None:
        raise await forbid(ctx, request, p, NOT_GRANTED)
    return found, await ctx.db(read_field, ctx.vault, found, field, actor=p.actor)


__all__ = ["CURRENT_ONLY", "NOT_GRANTED", "reveal_for", "router"]
