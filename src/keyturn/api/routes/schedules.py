"""Schedules: `PUT/GET/DELETE /records/{ref}/schedule` over `keyturn.scheduler.schedules`.

`PUT` goes through `keyturn.scheduler.assign.set_schedule`, exactly as `keyturn schedule set`: bad cron /
Quartz feature / zone / window / jitter, or a record without a rotation profile → 422 with the reason;
stored in the record's meta (key ``schedule``, anchored at the time it was set), audited, and the
running scheduler reloads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field

from keyturn.api.auth import Permission, Principal, context, require
from keyturn.api.context import ApiContext
from keyturn.scheduler.assign import clear_schedule, set_schedule
from keyturn.scheduler.schedules import META_KEY, from_meta
from keyturn.vault import Vault

router = APIRouter(prefix="/records", tags=["schedules"])


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: str | dict[str, Any] = Field(description="cron (5 field), Quartz (6-7 field), 'every 30d', or a "
                                                   "Keeper schedule object")
    tz: str | None = Field(default=None, max_length=64, description="IANA time zone (default UTC)")
    window: str | None = Field(default=None, max_length=256, description="e.g. 'Sat 01:00-05:00'")
    jitter: str | None = Field(default=None, max_length=32, description="e.g. '10m'")


class ScheduleOut(BaseModel):
    record_uid: str
    schedule: dict[str, Any] | None
    description: str | None
    next_slot: datetime | None


def _set(vault: Vault, ref: str, body: ScheduleIn, actor: str) -> ScheduleOut:
    if isinstance(body.spec, str) and len(body.spec) > 512:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "schedule spec is too long")
    now = datetime.now(UTC)
    # The same validation, storage and audit entry as `keyturn schedule set`.
    sched = set_schedule(vault, ref, body.spec, tz=body.tz, window=body.window, jitter=body.jitter,
                         actor=actor, now=now)
    return ScheduleOut(record_uid=vault.resolve(ref), schedule=sched.to_meta(), description=sched.describe(),
                       next_slot=sched.next_slot(now))


def _get(vault: Vault, ref: str) -> ScheduleOut:
    rec = vault.get(ref)
    data = rec.meta.get(META_KEY)
    if data is None:
        return ScheduleOut(record_uid=rec.uid, schedule=None, description=None, next_slot=None)
    sched = from_meta(data)
    return ScheduleOut(record_uid=rec.uid, schedule=sched.to_meta(), description=sched.describe(),
                       next_slot=sched.next_slot(datetime.now(UTC)))


Ctx = Annotated[ApiContext, Depends(context)]


@router.get("/{ref}/schedule", response_model=ScheduleOut, summary="The record's schedule (null: on demand)")
async def get_schedule(
    ref: str, ctx: Ctx, _p: Annotated[Principal, Depends(require(Permission.ROTATION_READ))],
) -> ScheduleOut:
    return await ctx.db(_get, ctx.vault, ref)


@router.put("/{ref}/schedule", response_model=ScheduleOut, summary="Set (validate and store) the schedule")
async def put_schedule(
    ref: str, body: ScheduleIn, ctx: Ctx,
    p: Annotated[Principal, Depends(require(Permission.ROTATION_WRITE))],
) -> ScheduleOut:
    out = await ctx.db(_set, ctx.vault, ref, body, p.actor)
    ctx.reload_scheduler()
    return out


@router.delete("/{ref}/schedule", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               summary="Clear the schedule (rotate on demand only)")
async def delete_schedule(
    ref: str, ctx: Ctx, p: Annotated[Principal, Depends(require(Permission.ROTATION_WRITE))],
) -> Response:
    await ctx.db(clear_schedule, ctx.vault, ref, actor=p.actor)
    ctx.reload_scheduler()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


__all__ = ["router"]
