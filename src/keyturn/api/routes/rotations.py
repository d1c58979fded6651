"""Rotations: `POST /rotations` (rotate now, 202 + ids), `GET /rotations/{id}` (status + step log),
`GET /records/{ref}/history` (rotations and password versions of one record).

`POST /rotations` resolves every reference first: one unknown or ambiguous record refuses the whole
request (404 / 409) and nothing is started. A record without a rotation profile, or with one carrying an
option profiles may not set (stored before options were checked), is refused (422) for the same reason:
better told now than by a failed rotation later.

Post-rotation script output (``stdout``/``stderr``) is shown only to callers holding the ``reveal``
permission (admins): redaction is best effort, and output is where a script echoes what it was given.
Others see each script's name, exit code, ``ok`` and error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from keyturn.api.auth import Permission, Principal, context, require
from keyturn.api.context import ApiContext
from keyturn.api.jobs import Job
from keyturn.engine.journal import Journal, RotationRow
from keyturn.engine.profile import check_options, load_profile

router = APIRouter(tags=["rotations"])


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[Annotated[str, Field(min_length=1, max_length=512)]] = Field(min_length=1, max_length=1000)


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


class RotationOut(BaseModel):
    id: str
    request_id: str | None = None
    record_uid: str
    title: str
    target: str
    state: str
    outcome: str | None
    reason: str
    last_step: str
    candidate_version: int | None = None
    old_version: int | None = None
    applied: str = ""
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    scripts: list[dict[str, Any]] = Field(default_factory=list)
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
    data = row.to_json()
    return RotationOut(
        id=row.id, request_id=request_id, record_uid=row.record_uid, title=row.title, target=row.target,
        state=data["state"], outcome=data["outcome"], reason=row.reason, last_step=row.last_step,
        candidate_version=row.candidate_version, old_version=row.old_version, applied=row.applied,
        started_at=row.started_at, finished_at=row.finished_at, duration=data["duration"],
        scripts=_scripts(data["scripts"], output),
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
    if not ctx.runner.accepting:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the service is shutting down")
    chosen: dict[str, tuple[str, str]] = {}
    for ref in body.records:
        rec = await ctx.db(ctx.vault.get, ref)
        profile = load_profile(rec)  # ProfileError → 422 before anything starts
        check_options(profile.options)
        chosen.setdefault(rec.uid, (rec.title, profile.resource or rec.uid))
    out = []
    for uid, (title, resource) in chosen.items():
        job = ctx.runner.submit(uid, title=title, actor=p.actor, resource=resource)
        await ctx.db(ctx.vault.audit.append, "api.rotate", actor=p.actor, record_uid=uid,
                     details={"request_id": job.id})
        out.append(Accepted(id=job.id, record_uid=uid, title=title, state=job.state))
    return RotateOut(rotations=out)


@router.get("/rotations/{rotation_id}", response_model=RotationOut, summary="Rotation status and step log")
async def get_rotation(
    rotation_id: Annotated[str, Path(max_length=64)], ctx: Ctx,
    p: Annotated[Principal, Depends(require(Permission.ROTATION_READ))],
) -> RotationOut:
    journal = Journal(ctx.vault.engine)
    row = await ctx.db(journal.get, rotation_id)
    request_id = None
    job = ctx.runner.get(rotation_id)
    if row is None and job is not None:
        row = await ctx.db(_find_for_job, journal, job)
        request_id = job.id
    if row is None:
        if job is not None:
            return _job_out(job)
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rotation with id {rotation_id!r}")
    steps = await ctx.db(journal.steps, row.id)
    return rotation_out(row, steps, request_id, output=p.can(Permission.REVEAL))


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


__all__ = ["router"]
