"""Execution history, run now, manual retry, callbacks and alerts: thin HTTP translation."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from proxy_lambda.signing import verify_callback_token
from service.api.deps import ContainerDep, HistoryDep, PrincipalDep, TenancyDep
from service.api.errors import error_responses
from service.domain.errors import InvalidRequest, NotFound

router = APIRouter(tags=["executions"], responses=error_responses(401, 422, 429))
callbacks = APIRouter(tags=["callbacks"], responses=error_responses(422))


class ResponseExcerpt(BaseModel):
    headers: dict[str, str]
    body: str | None
    truncated: bool


class ExecutionOut(BaseModel):
    id: str
    task_id: str
    occurrence_key: str
    scheduled_time: str
    attempt: int
    trigger: str
    status: str
    status_code: int | None
    latency_ms: int | None
    late_seconds: float | None
    error_kind: str | None
    error: str | None
    response: ResponseExcerpt
    output: Any
    started_at: str | None
    finished_at: str | None
    callback_deadline: str | None
    next_attempt_at: str | None
    created_at: str | None
    updated_at: str | None


class ExecutionPageOut(BaseModel):
    items: list[ExecutionOut]
    next_cursor: str | None


class AlertOut(BaseModel):
    id: str
    kind: str
    task_id: str | None
    execution_id: str | None
    message: str
    details: dict[str, Any]
    created_at: str | None


class AlertPageOut(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None


class CallbackIn(BaseModel):
    """The target's report on work it accepted (processing, then success or failed)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "success", "output": {"rows": 1200}}]},
    )

    status: Literal["processing", "success", "failed"]
    output: Any = None
    error: str | None = Field(default=None, max_length=2000)


class CallbackOut(BaseModel):
    execution_id: str
    status: str


Id = Annotated[str, Path(max_length=64, description="A UUID")]
Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[str | None, Query(max_length=128)]
Status = Annotated[str | None, Query(max_length=32)]
Time = Annotated[datetime | None, Query(description="ISO 8601 with an offset")]


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidRequest(name, "must carry an offset or Z")
    return value


@router.get("/v1/executions", response_model=ExecutionPageOut)
def list_executions(
    principal: PrincipalDep,
    history: HistoryDep,
    status: Status = None,
    task_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Time = None,
    until: Time = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Newest first; `status=failed` is the failed list. `since`/`until` bound the scheduled
    time."""
    page = history.list(
        principal.tenant_id,
        task_id=task_id,
        status=status,
        since=_aware(since, "since"),
        until=_aware(until, "until"),
        limit=limit,
        cursor=cursor,
    )
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.get(
    "/v1/tasks/{task_id}/executions",
    response_model=ExecutionPageOut,
    responses=error_responses(404),
)
def list_task_executions(
    task_id: Id,
    principal: PrincipalDep,
    history: HistoryDep,
    status: Status = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    page = history.list_for_task(
        principal.tenant_id, task_id, status=status, limit=limit, cursor=cursor
    )
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.get(
    "/v1/executions/{execution_id}", response_model=ExecutionOut, responses=error_responses(404)
)
def get_execution(execution_id: Id, principal: PrincipalDep, history: HistoryDep) -> dict[str, Any]:
    return history.get(principal.tenant_id, execution_id)


@router.post(
    "/v1/executions/{execution_id}/retry",
    status_code=202,
    response_model=ExecutionOut,
    responses=error_responses(403, 404, 409, 503),
)
def retry_execution(
    execution_id: Id, principal: PrincipalDep, history: HistoryDep, tenancy: TenancyDep
) -> dict[str, Any]:
    """Run a failed execution's occurrence again now, as its next attempt."""
    principal.require("editor")
    started = history.retry(principal.tenant_id, execution_id)
    tenancy.record(principal, "execution.retry", "execution", execution_id, {"new": started["id"]})
    return started


@router.post(
    "/v1/tasks/{task_id}/run",
    status_code=202,
    response_model=ExecutionOut,
    responses=error_responses(403, 404, 409, 503),
)
def run_task(
    task_id: Id, principal: PrincipalDep, history: HistoryDep, tenancy: TenancyDep
) -> dict[str, Any]:
    """Fire the task once now; its schedule is not touched. The execution starts `pending`."""
    principal.require("editor")
    started = history.run_now(principal.tenant_id, task_id)
    tenancy.record(principal, "task.run", "task", task_id, {"execution_id": started["id"]})
    return started


@router.get("/v1/alerts", response_model=AlertPageOut)
def list_alerts(
    principal: PrincipalDep, history: HistoryDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    """Late starts, final failures and missed runs, newest first."""
    page = history.alerts(principal.tenant_id, limit=limit, cursor=cursor)
    return {"items": page.items, "next_cursor": page.next_cursor}


@callbacks.put(
    "/v1/callbacks/{token}", response_model=CallbackOut, responses=error_responses(404, 409)
)
def report_callback(
    token: Annotated[str, Path(max_length=1024)],
    body: Annotated[CallbackIn, Body()],
    container: ContainerDep,
) -> dict[str, Any]:
    """The target reports on an occurrence; the token (from `Timebridge-Callback-Url`) is the
    credential. Terminal executions answer 409 CALLBACK_CLOSED."""
    key = None
    if container.signing_secret:
        key = verify_callback_token(token, container.signing_secret)
    if key is None:
        raise NotFound("unknown callback token")
    return container.recorder.report_callback(
        key, body.status, output=body.output, error=body.error
    )
