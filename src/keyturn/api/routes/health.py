"""`/healthz` (the process answers), `/readyz` (vault open, database reachable, scheduler running) and
`/metrics` (Prometheus).

All three are unauthenticated: probes and scrapers carry no tokens, and none of them returns a record,
a title or a secret — `/metrics` labels are target kinds, outcomes and route templates only. The service
binds 127.0.0.1 by default; expose `/metrics` beyond the host only through a proxy you control.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from keyturn.api.auth import context
from keyturn.api.context import ApiContext
from keyturn.api.metrics import CONTENT_TYPE
from keyturn.vault import Vault

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    checks: dict[str, str]


def _db_ok(vault: Vault) -> None:
    with vault.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}}, summary="Readiness")
async def readyz(ctx: Annotated[ApiContext, Depends(context)]) -> JSONResponse:
    checks: dict[str, str] = {"vault": "open"}
    try:
        await ctx.db(_db_ok, ctx.vault)
        checks["database"] = "ok"
    except Exception as exc:  # any failure here means "not ready", reported by type only
        checks["database"] = f"unreachable ({type(exc).__name__})"
    if ctx.scheduler is None:
        checks["scheduler"] = "disabled"
    elif ctx.scheduler_alive is not None and not ctx.scheduler_alive():
        checks["scheduler"] = "stopped"
    else:
        checks["scheduler"] = "running"
    checks["rotations"] = "accepting" if ctx.runner.accepting else "draining"
    ready = checks["database"] == "ok" and checks["scheduler"] != "stopped" and ctx.runner.accepting
    body = Ready(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(ctx: Annotated[ApiContext, Depends(context)]) -> Response:
    return Response(await ctx.db(ctx.metrics.render), media_type=CONTENT_TYPE)


__all__ = ["router"]
