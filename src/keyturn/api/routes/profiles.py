"""Rotation profiles: `PUT/GET /records/{ref}/rotation` over `keyturn.engine.profile`.

`PUT` validates everything `set_profile` validates (records exist, target kind known, policy feasible
on the target) and answers 422 with the reason when it does not hold. ``options.site`` is the
account's site override (`keyturn.sites`): a known site, else 422 listing the known ones.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from keyturn.api.auth import Permission, Principal, context, require
from keyturn.api.context import ApiContext
from keyturn.engine.accounts import ENABLE_TARGET, link_enable_secret
from keyturn.engine.profile import RotationProfile, load_profile, set_profile

router = APIRouter(prefix="/records", tags=["rotation profiles"])


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=1, max_length=64, description="target kind, e.g. iosxe-restconf")
    resource: str | None = Field(default=None, max_length=512, description="device / network record")
    admin: str | None = Field(default=None, max_length=512, description="admin credential record")
    configuration: str | None = Field(default=None, max_length=512, description="pamConfiguration record")
    policy: dict[str, Any] | str | None = Field(default=None, description="Keeper complexity object or spec")
    verify_with: str | None = Field(default=None, max_length=64)
    options: dict[str, str] = Field(default_factory=dict, max_length=64,
                                    description="mode, verify, failed_login_budget, verify_via, site")
    max_attempts: int = Field(default=3, ge=1, le=100)


class ProfileOut(BaseModel):
    record_uid: str
    target: str
    resource: str | None
    admin: str | None
    configuration: str | None
    policy: dict[str, Any] | None
    verify_with: str | None
    options: dict[str, str]
    max_attempts: int


def profile_out(uid: str, p: RotationProfile) -> ProfileOut:
    return ProfileOut(record_uid=uid, **p.to_meta())


Ctx = Annotated[ApiContext, Depends(context)]


@router.get("/{ref}/rotation", response_model=ProfileOut, summary="The record's rotation profile")
async def get_profile(
    ref: str, ctx: Ctx, _p: Annotated[Principal, Depends(require(Permission.ROTATION_READ))],
) -> ProfileOut:
    rec = await ctx.db(ctx.vault.get, ref)
    return profile_out(rec.uid, load_profile(rec))


@router.put("/{ref}/rotation", response_model=ProfileOut, summary="Set (validate and store) the profile")
async def put_profile(
    ref: str, body: ProfileIn, ctx: Ctx, p: Annotated[Principal, Depends(require(Permission.ROTATION_WRITE))],
) -> ProfileOut:
    uid = await ctx.db(ctx.vault.resolve, ref)
    profile = await ctx.db(
        set_profile, ctx.vault, uid, target=body.target, resource=body.resource, admin=body.admin,
        configuration=body.configuration, policy=body.policy, verify_with=body.verify_with,
        options=body.options, max_attempts=body.max_attempts, actor=p.actor,
    )
    admin = profile.admin
    if profile.target == ENABLE_TARGET and admin is not None and admin != uid \
            and p.can(Permission.RECORDS_WRITE):
        # As `keyturn rotation set` does: the admin record reads the enable secret from this record,
        # so SSH rotations never use a stale copy. It changes the admin record, so only a caller who
        # may write records (admin) gets it; an operator's profile leaves the admin record alone.
        await ctx.db(link_enable_secret, ctx.vault, uid, admin, actor=p.actor)
    ctx.reload_scheduler()
    return profile_out(uid, profile)


__all__ = ["router"]
