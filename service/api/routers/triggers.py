"""Triggers other than time (issue 9 part A): `POST /v1/events`, `POST /v1/tasks/{id}/backfill`
and `GET /v1/schedules`. Thin: the checks live in service.application.triggers."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import PrincipalDep, TenancyDep, TriggersDep
from service.api.errors import error_responses

router = APIRouter(tags=["triggers"], responses=error_responses(401, 422, 429))


class EventIn(BaseModel):
    """An event on one of the tenant's topics."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"topic": "orders.eu.created", "payload": {"id": 7, "amount": 120}}]
        },
    )

    topic: str = Field(min_length=1, max_length=255)
    payload: Any = None


class EventOut(BaseModel):
    event_id: str
    topic: str
    matched: int
    executions: list[dict[str, Any]]


class BackfillIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [{"from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "max": 100}]
        },
    )

    from_: str = Field(alias="from", max_length=64)
    to: str = Field(max_length=64)
    max: int | None = None


class BackfillOut(BaseModel):
    task_id: str
    queued: int
    already_recorded: int
    first: str | None
    last: str | None
    truncated: bool
    rate_per_second: float


class ScheduleOut(BaseModel):
    name: str
    arn: str
    expression: str | None
    timezone: str | None
    state: str
    task_id: str | None
    retry: bool


class SchedulePageOut(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None


@router.post("/v1/events", status_code=202, response_model=EventOut, responses=error_responses(403))
def publish_event(
    body: Annotated[EventIn, Body()], principal: PrincipalDep, triggers: TriggersDep
) -> dict[str, Any]:
    """Run every event task of the caller's tenant whose topic pattern and filter match (202;
    `matched` 0 when none does)."""
    principal.require("editor")
    return triggers.publish(principal.tenant_id, body.topic, body.payload)


@router.post(
    "/v1/tasks/{task_id}/backfill",
    status_code=202,
    response_model=BackfillOut,
    responses=error_responses(403, 404, 409),
)
def backfill_task(
    task_id: Annotated[str, Path(max_length=64)],
    body: Annotated[BackfillIn, Body()],
    principal: PrincipalDep,
    triggers: TriggersDep,
    tenancy: TenancyDep,
) -> dict[str, Any]:
    """Queue the task's occurrences in [from, to) (past only), oldest first, paced."""
    principal.require("editor")
    request: dict[str, Any] = {"from": body.from_, "to": body.to}
    if body.max is not None:
        request["max"] = body.max
    result = triggers.backfill(principal.tenant_id, task_id, request)
    tenancy.record(principal, "task.backfill", "task", task_id, {"queued": result["queued"]})
    return result


@router.get("/v1/schedules", response_model=SchedulePageOut)
def list_schedules(
    principal: PrincipalDep,
    triggers: TriggersDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """The schedules the backend holds (name, ARN, expression, time zone, state, task id), by
    name; a tenant's keys see their own tasks' schedules, a system administrator all."""
    return triggers.schedules(
        principal.tenant_id, everyone=principal.system_admin, limit=limit, cursor=cursor
    )
