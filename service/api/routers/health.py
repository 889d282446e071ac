"""Liveness: the process answers. Readiness (`/ready`, the database) comes with the database."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


@router.get("/health", summary="The process is up")
async def health() -> Health:
    return Health()
