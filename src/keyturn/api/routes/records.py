"""Records CRUD, and `POST /records/{ref}/restore` (make an earlier secret version current again).
Secret fields are write-only: responses show ``"********"`` in their place.

A client that reads a record and writes it back unchanged sends the placeholder again; a secret value
equal to the placeholder therefore means "keep the current value", never "set it to ********".

``site`` (create / patch) is the resource's site (`keyturn.sites`), kept in ``meta.site``: a known site,
checked as `keyturn record add --site` checks it (422 listing the known sites); ``""`` or ``"default"``
clears it, an omitted one leaves it as it is.

``tags`` (create / patch) are the record's tags (`keyturn.tags`), kept in ``meta.tags``: the groups a
consumer token's ``tag:NAME`` grant reveals. A patch's list replaces the record's (``[]`` removes them
all), an omitted one leaves them; a malformed tag is 422 with the rule, as `keyturn record add --tag`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from keyturn import tags as tagging
from keyturn.api.auth import Permission, Principal, context, require
from keyturn.api.context import ApiContext
from keyturn.secret import Secret
from keyturn.sites import META_KEY as SITE_KEY
from keyturn.sites import site_setting
from keyturn.vault import Field as VaultField
from keyturn.vault import Vault
from keyturn.vault.records import MAX_TITLE_CHARS, SECRET_FIELD_TYPES, Record

MASK = "********"
TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"

router = APIRouter(prefix="/records", tags=["records"])


class FieldIn(BaseModel):
    """A Keeper-style field. Secret types (password, secret, pinCode, oneTimeCode, privateKey) take one
    string value; ``"********"`` keeps the current value."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(pattern=TYPE_PATTERN)
    label: str | None = Field(default=None, max_length=128)
    value: list[Any] = Field(default_factory=list, max_length=64)

    @field_validator("value")
    @classmethod
    def _secret_values(cls, value: list[Any], info: Any) -> list[Any]:
        if info.data.get("type") in SECRET_FIELD_TYPES:
            if len(value) > 1:
                raise ValueError("a secret field holds at most one value")
            if any(not isinstance(v, str) for v in value):
                raise ValueError("secret values must be strings")
        return value


class FieldOut(BaseModel):
    type: str
    label: str | None
    value: list[Any]


SITE_DESCRIPTION = 'site whose workers rotate the accounts on this resource; "" or "default" clears'
TAGS_DESCRIPTION = "the record's tags (groups for consumer grants); on a patch the list replaces them"


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(pattern=TYPE_PATTERN)
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    fields: list[FieldIn] = Field(default_factory=list, max_length=200)
    custom: list[FieldIn] = Field(default_factory=list, max_length=200)
    allow_duplicate: bool = False
    site: str | None = Field(default=None, max_length=64, description=SITE_DESCRIPTION)
    tags: list[str] | None = Field(default=None, max_length=tagging.MAX_TAGS, description=TAGS_DESCRIPTION)


class RecordPatch(BaseModel):
    """Fields given replace the record's whole standard / custom list; omitted ones stay."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_CHARS)
    fields: list[FieldIn] | None = Field(default=None, max_length=200)
    custom: list[FieldIn] | None = Field(default=None, max_length=200)
    allow_duplicate: bool = False
    site: str | None = Field(default=None, max_length=64, description=SITE_DESCRIPTION)
    tags: list[str] | None = Field(default=None, max_length=tagging.MAX_TAGS, description=TAGS_DESCRIPTION)


class RecordOut(BaseModel):
    uid: str
    title: str
    type: str
    fields: list[FieldOut]
    custom: list[FieldOut]
    meta: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class RecordSummaryOut(BaseModel):
    uid: str
    title: str
    type: str
    updated_at: datetime


def _mask(values: list[Any]) -> list[Any]:
    return [MASK if isinstance(v, Secret) else v for v in values]


def record_out(rec: Record) -> RecordOut:
    return RecordOut(
        uid=rec.uid, title=rec.title, type=rec.type,
        fields=[FieldOut(type=f.type, label=f.label, value=_mask(f.value)) for f in rec.fields],
        custom=[FieldOut(type=f.type, label=f.label, value=_mask(f.value)) for f in rec.custom],
        meta=rec.meta, created_at=rec.created_at, updated_at=rec.updated_at,
    )


def to_fields(items: list[FieldIn]) -> list[VaultField]:
    out = []
    for f in items:
        if f.type in SECRET_FIELD_TYPES:
            # The placeholder (or nothing) keeps the current version: the vault treats [] that way.
            value: list[Any] = [Secret(v) for v in f.value if v != MASK]
        else:
            value = list(f.value)
        out.append(VaultField(f.type, f.label, value))
    return out


Ctx = Annotated[ApiContext, Depends(context)]


@router.get("", response_model=list[RecordSummaryOut], summary="List records (metadata only)")
async def list_records(
    ctx: Ctx, _p: Annotated[Principal, Depends(require(Permission.RECORDS_READ))],
    type: Annotated[str | None, Query(max_length=64)] = None,
    title: Annotated[str | None, Query(max_length=512, description="case-insensitive substring")] = None,
) -> list[RecordSummaryOut]:
    rows = await ctx.db(ctx.vault.summaries, type=type, title=title)
    return [RecordSummaryOut(uid=r.uid, title=r.title, type=r.type, updated_at=r.updated_at) for r in rows]


@router.post("", response_model=RecordOut, status_code=status.HTTP_201_CREATED, summary="Create a record")
async def create_record(
    body: RecordIn, ctx: Ctx, p: Annotated[Principal, Depends(require(Permission.RECORDS_WRITE))],
) -> RecordOut:
    site = site_setting(body.site, ctx.vault.settings)
    meta: dict[str, Any] = {SITE_KEY: site} if site else {}
    if body.tags:
        meta[tagging.META_KEY] = tagging.check_tags(body.tags)
    # allow_scripts=False: a Shell field runs a program with the passwords; only the CLI sets one.
    rec = await ctx.db(ctx.vault.add, type=body.type, title=body.title, fields=to_fields(body.fields),
                       custom=to_fields(body.custom), allow_duplicate=body.allow_duplicate,
                       meta=meta or None, actor=p.actor, allow_scripts=False)
    return record_out(rec)


@router.get("/{ref}", response_model=RecordOut, summary="A record; secret values as ********")
async def get_record(
    ref: str, ctx: Ctx, _p: Annotated[Principal, Depends(require(Permission.RECORDS_READ))],
) -> RecordOut:
    return record_out(await ctx.db(ctx.vault.get, ref))


@router.patch("/{ref}", response_model=RecordOut, summary="Change title and/or fields")
async def update_record(
    ref: str, body: RecordPatch, ctx: Ctx,
    p: Annotated[Principal, Depends(require(Permission.RECORDS_WRITE))],
) -> RecordOut:
    site = site_setting(body.site, ctx.vault.settings) if body.site is not None else None
    if body.tags is not None:
        tagging.check_tags(body.tags)
    uid = await ctx.db(ctx.vault.resolve, ref)
    return record_out(await ctx.db(_update, ctx.vault, uid, body, site, p.actor))


def _update(vault: Vault, uid: str, body: RecordPatch, site: str | None, actor: str) -> Record:
    """The patch in one transaction: fields and title, then the site and the tags when given and they
    differ."""
    with vault.unit():
        if not body.model_fields_set & {"site", "tags"} or body.model_fields_set - {"site", "tags",
                                                                                     "allow_duplicate"}:
            rec = vault.update(
                uid, title=body.title, fields=to_fields(body.fields) if body.fields is not None else None,
                custom=to_fields(body.custom) if body.custom is not None else None,
                allow_duplicate=body.allow_duplicate, actor=actor, allow_scripts=False,
            )
        else:
            rec = vault.get(uid)
        if body.site is not None and rec.meta.get(SITE_KEY) != site:
            vault.set_meta(uid, SITE_KEY, site, actor=actor)
            rec = vault.get(uid)
        if body.tags is not None:
            new = tagging.check_tags(body.tags)
            if new != tagging.tags_of(rec.meta):
                vault.set_meta(uid, tagging.META_KEY, new or None, actor=actor)
                rec = vault.get(uid)
    return rec


class RestoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=2**31 - 1, description="the version to make current again")
    field: str = Field(default="password", min_length=1, max_length=128)


class RestoreOut(BaseModel):
    uid: str
    field: str
    restored: int
    version: int = Field(description="the new current version (a copy of `restored`)")


@router.post("/{ref}/restore", response_model=RestoreOut,
             summary="Make an earlier secret version current again (audited; the device is not touched)")
async def restore_version(
    ref: str, body: RestoreIn, ctx: Ctx, p: Annotated[Principal, Depends(require(Permission.RECORDS_WRITE))],
) -> RestoreOut:
    uid = await ctx.db(ctx.vault.resolve, ref)
    number = await ctx.db(ctx.vault.restore, uid, body.version, field=body.field, actor=p.actor)
    return RestoreOut(uid=uid, field=body.field, restored=body.version, version=number)


@router.delete("/{ref}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               summary="Delete a record and all its secret versions")
async def delete_record(
    ref: str, ctx: Ctx, p: Annotated[Principal, Depends(require(Permission.RECORDS_WRITE))],
) -> Response:
    uid = await ctx.db(ctx.vault.resolve, ref)
    await ctx.db(ctx.vault.remove, uid, actor=p.actor)
    ctx.reload_scheduler()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


__all__ = ["MASK", "FieldIn", "RecordIn", "RecordOut", "RestoreIn", "record_out", "router"]
