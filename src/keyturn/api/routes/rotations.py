"""Rotations: `POST /rotations` (rotate now, 202 + ids), `GET /rotations` (recent rotations, filtered and
paged), `GET /rotations/{id}` (status + step log), `GET /records/{ref}/history` (rotations and password
versions of one record).

`POST /rotations` takes exactly one of ``records`` (a list of references), ``filter`` (the language of
``keyturn rotate --filter``) or ``all: true`` (every record with a rotation profile); a filter that
matches nothing is refused (422) and nothing is started. It resolves every reference first: one unknown
or ambiguous record refuses the whole request (404 / 409) and nothing is started. A record without a
rotation profile, or with one carrying an option profiles may not set (stored before options were
checked), is refused (422) for the same reason: better told now than by a failed rotation later.

Post-rotation script output (``stdout``/``stderr``) is shown only to callers holding the ``reveal``
permission (admins): redaction is best effort, and output is where a script echoes what it was given.
Others see each script's name, exit code, ``ok`` and error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from keyturn.accounts_view import OUTCOMES, Rotation, RotationList, list_rotations, parse_since
from keyturn.api.auth import Permission, Principal, context, require
from keyturn.api.context import ApiContext
from keyturn.api.jobs import Job
from keyturn.engine.journal import Journal, RotationRow, read_tx
from keyturn.engine.profile import RotationProfile, check_options, load_profile
from keyturn.errors import ConfigError
from keyturn.selection import FILTER_HELP, select, why_nothing
from keyturn.vault import Vault

router = APIRouter(tags=["rotations"])


class RotateIn(BaseModel):
    """Exactly one of `records`, `filter`, `all`."""

    model_config = ConfigDict(extra="forbid")
    records: list[Annotated[str, Field(min_length=1, max_length=512)]] | None = Field(
        default=None, min_length=1, max_length=1000, description="record uids or unique titles")
    filter: str | None = Field(default=None, min_length=1, max_length=1024, description=FILTER_HELP)
    all: bool = Field(default=False, description="every record with a rotation profile")

    @model_validator(mode="after")
    def _one_selection(self) -> RotateIn:
        if sum((self.records is not None, self.filter is not None, self.all)) != 1:
            raise ValueError("give exactly one of records, filter, or all: true")
        return self


class Accepted(BaseModel):
    id: str = Field(description="rotation id: GET /rotations/{id}")
    record_uid: str
    title: str
    state: str


class RotateOut(BaseModel):
    rotations: list[Accepted]


class StepOut(BaseModel):
    step: str
    status: str
    message: str
    at: datetime
    worker: str = ""       # host, pid and site of the process that wrote the step


class RotationOut(Rotation):
    """A rotation (the `Rotation` of `GET /rotations`) with its step log."""

    request_id: str | None = None
    steps: list[StepOut] = Field(default_factory=list)


class VersionOut(BaseModel):
    version: int
    state: str
    rotation_id: str | None
    created_at: datetime
    updated_at: datetime


class HistoryOut(BaseModel):
    record_uid: str
    title: str
    rotations: list[RotationOut]
    versions: list[VersionOut]


Ctx = Annotated[ApiContext, Depends(context)]


# Keys of a script summary that carry the script's output (admin only).
SCRIPT_OUTPUT = ("stdout", "stderr")


def _scripts(scripts: list[dict[str, Any]], output: bool) -> list[dict[str, Any]]:
    return scripts if output else [{k: v for k, v in s.items() if k not in SCRIPT_OUTPUT} for s in scripts]


def rotation_out(row: RotationRow, steps: list[Any] | None = None,
                 request_id: str | None = None, *, output: bool = False) -> RotationOut:
    """The API view of a journal row; script output only with `output` (see the module docstring)."""
    base = Rotation.from_row(row)
    return RotationOut(
        **{**base.model_dump(), "scripts": _scripts(base.scripts, output)}, request_id=request_id,
        steps=[StepOut(step=s.step, status=str(s.status), message=s.message, at=s.at,
                       worker=s.worker) for s in steps or []],
    )


def _job_out(job: Job) -> RotationOut:
    return RotationOut(
        id=job.id, request_id=job.id, record_uid=job.record_uid, title=job.title, target="",
        state=job.state, outcome=str(job.result.outcome) if job.result else None,
        reason=job.result.reason if job.result else "", last_step="", started_at=job.started_at,
        finished_at=job.finished_at, duration=None,
    )


def _find_for_job(journal: Journal, job: Job) -> RotationRow | None:
    """The journal row of a job whose engine chose its own id (see `keyturn.api.jobs`)."""
    if job.rotation_id:
        return journal.get(job.rotation_id)
    if job.started_at is None:
        return None
    for row in journal.for_record(job.record_uid, limit=5):
        if row.started_at >= job.started_at:
            return row
    return None


@router.post("/rotations", response_model=RotateOut, status_code=status.HTTP_202_ACCEPTED,
             summary="Rotate records now (in the background)")
async def rotate(
    body: RotateIn, ctx: Ctx, p: Annotated[Principal, Depends(require(Permission.ROTATE))],
) -> RotateOut:
    return RotateOut(rotations=await start_rotations(ctx, p.actor, records=body.records,
                                                     filter_=body.filter))


async def start_rotations(ctx: ApiContext, actor: str, *, records: list[str] | None = None,
                          filter_: str | None = None) -> list[Accepted]:
    """Start rotating `records` (references), else those `filter_` selects (None: every account), in the
    background; each audited as `api.rotate`. Everything is resolved and checked first: one unknown,
    ambiguous or unrotatable record raises (`KeyturnError`) and nothing starts. 503 while shutting down.
    `POST /rotations` and the console's "rotate now" both call it."""
    if not ctx.runner.accepting:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the service is shutting down")
    if records is not None:
        chosen: dict[str, tuple[str, str]] = {}
        for ref in records:
            rec = await ctx.db(ctx.vault.get, ref)
            profile = load_profile(rec)  # ProfileError → 422 before anything starts
            check_options(profile.options)
            chosen.setdefault(rec.uid, (rec.title, profile.resource or rec.uid))
    else:
        chosen = await ctx.db(_selected, ctx.vault, filter_)
    jobs = [(uid, title, ctx.runner.submit(uid, title=title, actor=actor, resource=resource))
            for uid, (title, resource) in chosen.items()]
    await ctx.db(_audit_requests, ctx.vault, [(uid, job.id) for uid, _title, job in jobs], actor)
    return [Accepted(id=job.id, record_uid=uid, title=title, state=job.state) for uid, title, job in jobs]


def _selected(vault: Vault, filter_: str | None) -> dict[str, tuple[str, str]]:
    """uid → (title, resource) of the records `filter_` (None: all) selects, each profile checked as
    for a list of references; metadata only. `ConfigError` (422) when nothing matches."""
    with read_tx(vault.engine) as conn:
        matched = select(conn, filter_)
        hint = why_nothing(conn, filter_) if not matched and filter_ is not None else ""
    if not matched:
        raise ConfigError("no record with a rotation profile matches the filter"
                          + (f" ({hint})" if hint else "") + "; nothing was started"
                          if filter_ is not None else "no record has a rotation profile; nothing was started")
    chosen = {}
    for rec in matched:
        profile = RotationProfile.from_meta(rec.profile)  # ProfileError → 422 before anything starts
        check_options(profile.options)
        chosen[rec.uid] = (rec.title, profile.resource or rec.uid)
    return chosen


def _audit_requests(vault: Vault, requests: list[tuple[str, str]], actor: str) -> None:
    """One `api.rotate` entry per accepted rotation, written in one transaction."""
    with vault.unit(batch_audit=True):
        for uid, request_id in requests:
            vault.audit.append("api.rotate", actor=actor, record_uid=uid, details={"request_id": request_id})


@router.get("/rotations", response_model=RotationList, summary="Recent rotations, newest first (paged)")
async def list_recent(
    ctx: Ctx, p: Annotated[Principal, Depends(require(Permission.ROTATION_READ))],
    record: Annotated[str | None, Query(max_length=512, description="record uid or unique title")] = None,
    outcome: Annotated[str | None, Query(max_length=32, description=", ".join(OUTCOMES))] = None,
    since: Annotated[str | None, Query(max_length=64, description="ISO 8601 time: rotations started at "
                                       "or after it (UTC without a zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RotationList:
    when = parse_since(since) if since is not None else None
    uid = await ctx.db(ctx.vault.resolve, record) if record is not None else None
    page = await ctx.db(list_rotations, ctx.vault.engine, record_uid=uid, outcome=outcome, since=when,
                        limit=limit, offset=offset)
    if not p.can(Permission.REVEAL):
        for r in page.rotations:
            r.scripts = _scripts(r.scripts, False)
    return page


@router.get("/rotations/{rotation_id}", response_model=RotationOut, summary="Rotation status and step log")
async def get_rotation(
    rotation_id: Annotated[str, Path(max_length=64)], ctx: Ctx,
    p: Annotated[Principal, Depends(require(Permission.ROTATION_READ))],
) -> RotationOut:
    found = await find_rotation(ctx, rotation_id, output=p.can(Permission.REVEAL))
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rotation with id {rotation_id!r}")
    return found


async def find_rotation(ctx: ApiContext, rotation_id: str, *, output: bool) -> RotationOut | None:
    """A rotation with its steps by rotation or request id: the journal's row, else the runner's job
    while it has no row yet; None when neither knows it. Script output only with `output`.
    `GET /rotations/{id}` and the console's rotation pages both call it."""
    journal = Journal(ctx.vault.engine)
    row = await ctx.db(journal.get, rotation_id)
    request_id = None
    job = ctx.runner.get(rotation_id)
    if row is None and job is not None:
        row = await ctx.db(_find_for_job, journal, job)
        request_id = job.id
    if row is None:
        return _job_out(job) if job is not None else None
    steps = await ctx.db(journal.steps, row.id)
    return rotation_out(row, steps, request_id, output=output)


@router.get("/records/{ref}/history", response_model=HistoryOut, summary="Rotations and password versions")
async def history(
    ref: str, ctx: Ctx, p: Annotated[Principal, Depends(require(Permission.ROTATION_READ))],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> HistoryOut:
    rec = await ctx.db(ctx.vault.get, ref)
    journal = Journal(ctx.vault.engine)
    rows = await ctx.db(journal.for_record, rec.uid, limit=limit)
    versions = await ctx.db(ctx.vault.versions, rec.uid)
    return HistoryOut(
        record_uid=rec.uid, title=rec.title,
        rotations=[rotation_out(r, output=p.can(Permission.REVEAL)) for r in rows],
        versions=[VersionOut(version=v.version, state=str(v.state), rotation_id=v.rotation_id,
                             created_at=v.created_at, updated_at=v.updated_at) for v in versions],
    )


__all__ = ["Accepted", "RotationOut", "find_rotation", "rotation_out", "router", "start_rotations"]
