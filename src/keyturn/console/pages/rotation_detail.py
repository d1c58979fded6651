"""One rotation: ``GET /rotations/{rotation_id}`` (the page) and ``GET /rotations/{rotation_id}/progress``
(the live panel, an HTML fragment that ``static/progress.js`` polls while the rotation runs).

Both read what ``GET /rotations/{id}`` answers (`keyturn.api.routes.rotations.find_rotation`: the
journal's row and steps, or the runner's job before the journal has a row): every step with its status,
message, time and the worker (host, pid, site) that wrote it; the verdicts on the current and the new
secret and the outcome with its reason; how the new secret was proved (``verified_by`` of the
rotation's ``rotation.audit`` entry); post-rotation scripts, their output for admins only.

The journal is the truth: the fragment is rebuilt from it on every poll, so a page that lost the server
shows the rotation's real state as soon as the server answers again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import Response

from keyturn.api.auth import Permission, context
from keyturn.api.routes.rotations import RotationOut, find_rotation
from keyturn.console.render import render
from keyturn.console.session import ConsoleSession, require_session
from keyturn.vault import Vault
from keyturn.vault.storage import AuditRow

router = APIRouter()

RotationId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f-]+$")]
VERDICT_STEPS = ("verify_current", "verify_new", "rollback", "reconcile")
# Rotation states after which nothing moves without a person or recovery: polling stops there.
SETTLED = ("done", "unverified", "needs_attention", "cancelled", "parked")


@dataclass(frozen=True, slots=True)
class Proof:
    """How the rotation's new secret was proved (from its audit entry), and the verdict steps."""

    verified_by: str
    verdicts: list[tuple[str, str, str]]     # (step, status, message)


def proof_of(vault: Vault, rotation: RotationOut) -> Proof:
    """``verified_by`` from the rotation's ``rotation.audit`` entry ("" before it is written)."""
    q = (sa.select(AuditRow.details).where(AuditRow.action == "rotation.audit",
                                           AuditRow.record_uid == rotation.record_uid,
                                           AuditRow.details.contains(rotation.id, autoescape=True))
         .order_by(AuditRow.id.desc()).limit(5))
    verified_by = ""
    with vault.storage.session() as s:
        for raw in s.scalars(q):
            details = json.loads(raw)
            if details.get("rotation_id") == rotation.id:
                verified_by = str(details.get("verified_by") or "")
                break
    verdicts = [(s.step, s.status, s.message) for s in rotation.steps if s.step in VERDICT_STEPS]
    return Proof(verified_by=verified_by, verdicts=verdicts)


def settled(rotation: RotationOut) -> bool:
    """Nothing more will happen without a person or recovery (journal states and runner job states)."""
    return rotation.state in SETTLED


async def _find(request: Request, rotation_id: str, session: ConsoleSession) -> RotationOut:
    found = await find_rotation(context(request), rotation_id,
                                output=session.principal.can(Permission.REVEAL))
    if found is None:
        raise HTTPException(404, f"no rotation with id {rotation_id!r}")
    return found


@router.get("/rotations/{rotation_id}", include_in_schema=False)
async def rotation_page(
    request: Request, rotation_id: RotationId,
    session: Annotated[ConsoleSession, Depends(require_session(permission=Permission.ROTATION_READ))],
) -> Response:
    rotation = await _find(request, rotation_id, session)
    ctx = context(request)
    proof = await ctx.db(proof_of, ctx.vault, rotation)
    return render(request, "rotation_detail.html", {"r": rotation, "proof": proof,
                                                    "settled": settled(rotation)})


@router.get("/rotations/{rotation_id}/progress", include_in_schema=False)
async def rotation_progress(
    request: Request, rotation_id: RotationId,
    session: Annotated[ConsoleSession, Depends(require_session(permission=Permission.ROTATION_READ))],
) -> Response:
    rotation = await _find(request, rotation_id, session)
    done = settled(rotation)
    return render(request, "_rotation_progress.html", {"r": rotation, "settled": done},
                  headers={"X-Rotation-State": "settled" if done else "running"})


__all__ = ["Proof", "proof_of", "router", "settled"]
