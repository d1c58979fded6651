"""`POST /records/{ref}/reveal`: the one route that returns a secret value (admin only, audited).

POST, not GET: a reveal changes state (an audit entry) and must never be cached or prefetched. The
response carries ``Cache-Control: no-store``. ``version`` reveals an earlier version (as `keyturn reveal
--version N`): an admin can read back a secret a rotation replaced, to undo a mistake.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from keyturn.api.auth import Permission, Principal, context, require
from keyturn.api.context import ApiContext

router = APIRouter(prefix="/records", tags=["reveal"])


class RevealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(default="password", min_length=1, max_length=128,
                       description="secret field: type, label, or custom label")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="an earlier version (GET /records/{ref}/history lists them)")


class RevealOut(BaseModel):
    uid: str
    field: str
    value: str
    version: int | None = None


@router.post("/{ref}/reveal", response_model=RevealOut, summary="Reveal a secret value (audited)")
async def reveal(
    ref: str, ctx: Annotated[ApiContext, Depends(context)],
    p: Annotated[Principal, Depends(require(Permission.REVEAL))], response: Response,
    body: RevealIn | None = None,
) -> RevealOut:
    ask = body or RevealIn()
    uid = await ctx.db(ctx.vault.resolve, ref)
    secret = await ctx.db(ctx.vault.reveal, uid, field=ask.field, actor=p.actor, version=ask.version)
    response.headers["Cache-Control"] = "no-store"
    return RevealOut(uid=uid, field=ask.field, value=secret.reveal(), version=ask.version)


__all__ = ["router"]
