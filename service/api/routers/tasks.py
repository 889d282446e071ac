"""`/v1/tasks`: thin translation between HTTP and the task use cases."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Response
from fastapi.exceptions import ResponseValidationError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, WithJsonSchema

from service.api.deps import PrincipalDep, TasksDep, TenancyDep
from service.api.errors import error_responses
from service.api.target_schema import TARGET_SCHEMA
from service.domain.limits import MAX_BATCH

# Every route authenticates and validates its input; each adds the failures it can meet.
router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=error_responses(401, 422, 429))

TASK_EXAMPLE: dict[str, Any] = {
    "name": "nightly-report",
    "schedule": {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"},
    "target": {
        "type": "http",
        "url": "https://reports.internal/run",
        "method": "POST",
        "headers": {"Authorization": "Bearer example"},
        "body": {"full": True},
        "timeout_seconds": 30,
    },
    "retry": {"max_attempts": 6, "base_delay_seconds": 60, "max_delay_seconds": 3600},
    "callback": {"enabled": False, "timeout_seconds": 3600},
    "metadata": {"team": "reports"},
    "overlap": "skip",
    "max_concurrency": 1,
    "priority": 10,
    "window": {
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "08:00",
        "end": "20:00",
        "timezone": "Asia/Seoul",
    },
    "outside_window": "skip",
}

# Execution control (issue 9): the same optional fields on create, patch and batch items.
Overlap = Literal["allow", "skip", "buffer_one"]
OutsideWindow = Literal["skip", "defer"]
OVERLAP_DOC = (
    "What an occurrence does while the task's previous execution still runs: run anyway "
    "(allow), be recorded as skipped with TASK_LOCKED (skip), or wait for it, one at most "
    "(buffer_one)."
)
WINDOW_DOC = (
    'When occurrences may run: {"days": ["mon", ...], "start": "08:00", "end": "20:00", '
    '"timezone": "Europe/Berlin"}; end after start; null removes it.'
)


class _ControlFields(BaseModel):
    """Execution control and dependencies: optional on create, patch and batch items."""

    overlap: Overlap | None = Field(default=None, description=OVERLAP_DOC)
    max_concurrency: int | None = Field(
        default=None, ge=1, le=10000, strict=True, description="Executions of this task at once."
    )
    priority: int | None = Field(
        default=None,
        strict=True,
        description="Higher first among same-instant occurrences (local engine; not on AWS).",
    )
    window: dict[str, Any] | None = Field(default=None, description=WINDOW_DOC)
    outside_window: OutsideWindow | None = Field(
        default=None, description="Outside the window: skip the occurrence or defer it."
    )
    depends_on: list[str] | None = None


class TaskIn(_ControlFields):
    """A task to create. `schedule` and `target` are checked in depth by the service."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TASK_EXAMPLE]})

    name: str = Field(min_length=1, max_length=255)
    schedule: dict[str, Any]
    target: Annotated[dict[str, Any], WithJsonSchema(TARGET_SCHEMA)]
    retry: dict[str, Any] | None = None
    callback: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class TaskPatch(_ControlFields):
    """Fields to change; the schedule is replaced whole when given."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"schedule": {"kind": "daily", "time": "10:00"}},
                {"overlap": "buffer_one", "priority": 5, "window": None},
            ]
        },
    )

    name: str | None = Field(default=None, min_length=1, max_length=255)
    schedule: dict[str, Any] | None = None
    target: Annotated[
        dict[str, Any] | None, WithJsonSchema({"anyOf": [TARGET_SCHEMA, {"type": "null"}]})
    ] = None
    retry: dict[str, Any] | None = None
    callback: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class TaskOut(BaseModel):
    id: str
    name: str
    status: str
    mode: str
    schedule: dict[str, Any]
    aws_expression: str | None
    timezone: str
    schedule_name: str
    schedule_arn: str | None
    next_fire_times: list[str]
    target: dict[str, Any]
    retry: dict[str, Any]
    callback: dict[str, Any]
    metadata: dict[str, Any]
    overlap: Overlap = "allow"
    max_concurrency: int | None = None
    priority: int = 0
    window: dict[str, Any] | None = None
    outside_window: OutsideWindow = "skip"
    version: int
    last_error: str | None
    depends_on: list[str] = []
    dependency_gate: str | None = None
    trigger_count: int = 0
    last_triggered_at: str | None = None
    created_at: str
    updated_at: str


class TaskPageOut(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class BatchIn(BaseModel):
    """Up to 1,000 task bodies; each may carry its own `idempotency_key`."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class BatchError(BaseModel):
    code: str
    message: str
    field: str | None


class BatchResult(BaseModel):
    index: int
    status: int
    task: TaskOut | None = None
    error: BatchError | None = None


class BatchOut(BaseModel):
    results: list[BatchResult]
    created: int
    failed: int


TaskId = Annotated[str, Path(max_length=64, description="The task id (a UUID)")]
_TASK_OUT = TypeAdapter(TaskOut)


def task_response(task: dict[str, Any], status_code: int) -> Response:
    """The task checked against TaskOut and encoded, as FastAPI does with a response model, but
    on the endpoint's own worker thread: for a sync endpoint FastAPI would hop to the thread pool
    a second time only to validate it."""
    try:
        value = _TASK_OUT.validate_python(task, from_attributes=True)
    except ValidationError as exc:
        errors = [{**e, "loc": ("response", *e["loc"])} for e in exc.errors(include_url=False)]
        raise ResponseValidationError(errors=errors, body=task) from None
    return Response(
        _TASK_OUT.dump_json(value, by_alias=True), status_code, media_type="application/json"
    )


@router.post(
    "",
    status_code=201,
    response_model=TaskOut,
    responses={
        200: {"model": TaskOut, "description": "Replayed: the task this Idempotency-Key made"},
        **error_responses(403, 409, 503),
    },
)
def create_task(
    body: Annotated[TaskIn, Body()],
    principal: PrincipalDep,
    tasks: TasksDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Create a task and its schedule. The same `Idempotency-Key` with the same body returns
    the task made the first time (200); with another body, 409."""
    principal.require("editor")
    task, created = tasks.create(
        principal.tenant_id,
        body.model_dump(exclude_none=True),
        idempotency_key=idempotency_key,
        actor=principal.actor,
    )
    return task_response(task, 201 if created else 200)


@router.get("", response_model=TaskPageOut)
def list_tasks(
    principal: PrincipalDep,
    tasks: TasksDep,
    status: Annotated[str | None, Query(max_length=32)] = None,
    name: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """Newest first; pass `next_cursor` back as `cursor` for the next page."""
    page = tasks.list(principal.tenant_id, status=status, name=name, limit=limit, cursor=cursor)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.post("/batch", response_model=BatchOut, responses=error_responses(403))
def create_batch(
    body: BatchIn, principal: PrincipalDep, tasks: TasksDep, tenancy: TenancyDep
) -> dict[str, Any]:
    """Create up to 1,000 tasks; every item gets its own status (201, 200 replayed, 4xx, 503)."""
    principal.require("editor")
    from service.application.batch import create_many  # imported on first use: cold start

    results = create_many(tasks, principal.tenant_id, body.tasks)
    created = sum(1 for r in results if r["status"] in (200, 201))
    made = [r["task"]["id"] for r in results if r["status"] == 201 and r.get("task")]
    if made:
        tenancy.record(principal, "task.batch_create", "batch", made[0], {"task_ids": made})
    return {"results": results, "created": created, "failed": len(results) - created}


@router.get("/{task_id}", response_model=TaskOut, responses=error_responses(404))
def get_task(task_id: TaskId, principal: PrincipalDep, tasks: TasksDep) -> dict[str, Any]:
    return tasks.get(principal.tenant_id, task_id)


@router.patch("/{task_id}", response_model=TaskOut, responses=error_responses(403, 404, 409, 503))
def update_task(
    task_id: TaskId, body: TaskPatch, principal: PrincipalDep, tasks: TasksDep, tenancy: TenancyDep
) -> dict[str, Any]:
    principal.require("editor")
    task = tasks.update(principal.tenant_id, task_id, body.model_dump(exclude_unset=True))
    tenancy.record(principal, "task.update", "task", task_id, {})
    return task


@router.delete("/{task_id}", response_model=TaskOut, responses=error_responses(403, 404, 503))
def cancel_task(
    task_id: TaskId, principal: PrincipalDep, tasks: TasksDep, tenancy: TenancyDep
) -> dict[str, Any]:
    """Cancel: the schedule is deleted, the task and its history stay readable."""
    principal.require("editor")
    task = tasks.cancel(principal.tenant_id, task_id)
    tenancy.record(principal, "task.cancel", "task", task_id, {})
    return task


@router.post(
    "/{task_id}/pause", response_model=TaskOut, responses=error_responses(403, 404, 409, 503)
)
def pause_task(
    task_id: TaskId, principal: PrincipalDep, tasks: TasksDep, tenancy: TenancyDep
) -> dict[str, Any]:
    principal.require("editor")
    task = tasks.pause(principal.tenant_id, task_id)
    tenancy.record(principal, "task.pause", "task", task_id, {})
    return task


@router.post(
    "/{task_id}/resume", response_model=TaskOut, responses=error_responses(403, 404, 409, 503)
)
def resume_task(
    task_id: TaskId, principal: PrincipalDep, tasks: TasksDep, tenancy: TenancyDep
) -> dict[str, Any]:
    principal.require("editor")
    task = tasks.resume(principal.tenant_id, task_id)
    tenancy.record(principal, "task.resume", "task", task_id, {})
    return task
