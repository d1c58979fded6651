"""Accounts: `GET /accounts` — every managed account (a record with a rotation profile) with its target,
site, last outcome and when, next due time and flags; the objects `keyturn status --json` prints.

Filters as the CLI's: ``filter`` (the language of ``keyturn rotate --filter``: ``type=``, ``target=``,
``title~``, ``resource=``, ``uid=``; comma = AND), ``outcome`` (``never``: not rotated yet), ``site``,
``flagged``; paged by ``limit`` / ``offset`` (``total`` counts every match). Metadata only: nothing is
decrypted, and the listing costs three SQL statements whatever the size of the fleet
(`keyturn.accounts_view`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from keyturn.accounts_view import FLAGS, NEVER, OUTCOMES, AccountList, AccountQuery, list_accounts
from keyturn.api.auth import Permission, Principal, context, require
from keyturn.api.context import ApiContext

router = APIRouter(tags=["accounts"])

Ctx = Annotated[ApiContext, Depends(context)]


@router.get("/accounts", response_model=AccountList, summary="Every managed account: last outcome, next due, "
            "flags")
async def accounts(
    ctx: Ctx, _p: Annotated[Principal, Depends(require(Permission.ROTATION_READ))],
    filter: Annotated[str | None, Query(max_length=1024, description="e.g. target=iosxe-ssh,title~sw00")
                      ] = None,
    outcome: Annotated[str | None, Query(max_length=32, description=", ".join((*OUTCOMES, NEVER)))] = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    flagged: Annotated[bool, Query(description="only accounts with a flag: " + ", ".join(FLAGS))] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AccountList:
    query = AccountQuery(filter=filter, outcome=outcome, site=site, flagged=flagged)
    return await ctx.db(list_accounts, ctx.vault.engine, query, limit=limit, offset=offset)


__all__ = ["router"]
