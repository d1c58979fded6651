"""Schedules: `PUT/GET /records/{ref}/schedule` (placeholder until `keyturn.scheduler` lands)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/records", tags=["schedules"])

__all__ = ["router"]
