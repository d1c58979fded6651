"""`POST /records/{ref}/reveal`: the one route that returns a secret value (admin only, audited).

POST, not GET: a reveal changes state (an audit entry) and must never be cached or prefetched. The
response carries ``Cache-Control: no-store``.
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


class RevealOut(BaseModel):
    uid: str
    field: str
    value: str


@router.post("/{ref}/reveal", response_model=RevealOut, summary="Reveal a secret value (audited)")
async def reveal(
    ref: str, ctx: Annotated[ApiContext, Depends(context)],
    p: Annotated[Principal, Depends(require(Permission.REVEAL))], response: Response,
    body: RevealIn | None = None,
) -> RevealOut:
    field = (body or RevealIn()).field
    uid = await ctx.db(ctx.vault.resolve, ref)
    secret = await ctx.db(ctx.vault.reveal, uid, field=field, actor=p.actor)
    response.headers["Cache-Control"] = "no-store"
    return RevealOut(uid=uid, field=field, value=secret.reveal())


__all__ = ["router"]
