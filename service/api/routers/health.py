"""Probes: `/health` and `/live` (the process answers), `/ready` (the database answers too)."""

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from service.api.deps import ContainerDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"]


@router.get("/health", summary="The process is up")
async def health() -> Health:
    return Health()


@router.get("/live", summary="The process is up (liveness probe)")
async def live() -> Health:
    return Health()


@router.get(
    "/ready",
    summary="The database answers (readiness probe)",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "the database does not answer"}},
)
def ready(container: ContainerDep) -> JSONResponse:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with container.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        body = Readiness(status="unavailable", database="unreachable")
        return JSONResponse(status_code=503, content=body.model_dump())
    return JSONResponse(status_code=200, content=Readiness(status="ok", database="ok").model_dump())


@router.get(
    "/metrics",
    summary="Prometheus text: tasks and executions by status, durations, lateness, errors",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition"}},
)
def metrics(container: ContainerDep) -> PlainTextResponse:
    return PlainTextResponse(
        container.metrics.render(container.sessions),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
