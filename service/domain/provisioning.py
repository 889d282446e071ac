"""The scheduler backend port and the value objects that cross it.

One task is one schedule. Its name is derived from the task id, so a row and its schedule find
each other without a lookup table, and schedule names can never collide across tenants. A
ClientToken of task id + version makes a retried create or update idempotent on AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

SCHEDULE_NAME_PREFIX = "tb-"


def schedule_name_for(task_id: str) -> str:
    """`tb-<task id without dashes>`: 35 characters, inside AWS's 1-64 [0-9a-zA-Z-_.]."""
    return SCHEDULE_NAME_PREFIX + task_id.replace("-", "")


def retry_schedule_name(task_id: str, scheduled_time: datetime, attempt: int) -> str:
    """`tb-<task id hex>-<occurrence UTC, to the second>-<attempt>`: the one-time schedule that
    fires one retry (at most 3 + 32 + 1 + 15 + 1 + 2 = 54 characters). Derived, so a redelivered
    outcome asks for the same schedule and a ClientToken conflict means "already there"."""
    return f"{schedule_name_for(task_id)}-{scheduled_time.astimezone(UTC):%Y%m%dT%H%M%S}-{attempt}"


def task_id_for(schedule_name: str) -> str | None:
    """The task id a schedule name was derived from (a task's own schedule or one of its retry
    schedules), or None for a name we did not make."""
    if not schedule_name.startswith(SCHEDULE_NAME_PREFIX):
        return None
    rest = schedule_name[len(SCHEDULE_NAME_PREFIX) :]
    raw, suffix = rest[:32], rest[32:]
    if len(raw) != 32 or any(c not in "0123456789abcdef" for c in raw):
        return None
    if suffix and not suffix.startswith("-"):
        return None
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def is_retry_schedule(schedule_name: str) -> bool:
    return task_id_for(schedule_name) is not None and len(schedule_name) > 35


def retry_occurrence(schedule_name: str) -> tuple[datetime, int] | None:
    """(occurrence time, attempt) a retry schedule's name was derived from, or None."""
    if not is_retry_schedule(schedule_name):
        return None
    stamp, _, attempt = schedule_name[36:].rpartition("-")
    try:
        moment = datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return (moment, int(attempt)) if attempt.isdigit() else None


def client_token_for(task_id: str, version: int) -> str:
    return f"{task_id.replace('-', '')}-{version}"


@dataclass(frozen=True)
class ScheduleTarget:
    """A schedule's own target when it is not the deployment's proxy Lambda: an AWS resource
    EventBridge Scheduler delivers to itself (a templated target, or a universal `aws-sdk` one),
    with the parameters its templated target takes."""

    arn: str
    message_group_id: str | None = None  # SqsParameters, for FIFO queues
    detail_type: str | None = None  # EventBridgeParameters
    source: str | None = None


@dataclass(frozen=True)
class ScheduleDefinition:
    """Everything a backend needs to create or replace one schedule."""

    name: str
    expression: str
    expression_timezone: str
    input: str  # JSON text handed to the target at fire time
    enabled: bool = True
    start: datetime | None = None
    end: datetime | None = None
    flexible_window_minutes: int | None = None
    delete_after_completion: bool = False
    description: str = ""
    target: ScheduleTarget | None = None  # None: the deployment's proxy Lambda
    # A name no schedule had before (a new task's own): nothing of an earlier schedule of that
    # name can linger to clear away. A hint about this create, not part of the schedule.
    new_name: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as the backend reports it."""

    definition: ScheduleDefinition
    arn: str


@dataclass(frozen=True)
class ScheduleSummary:
    """One row of a backend listing (ListSchedules carries no expression or input)."""

    name: str
    arn: str
    enabled: bool


class SchedulerBackend(Protocol):
    """Where schedules live: EventBridge Scheduler, or the local engine's table.

    Every method raises UpstreamThrottled / UpstreamUnavailable for backend failures and
    InvalidSchedule when the backend refuses a definition.
    """

    def create(self, definition: ScheduleDefinition, *, client_token: str) -> str:
        """Create the schedule and return its ARN; raises Conflict if the name exists."""

    def get(self, name: str) -> ScheduleInfo | None:
        """The schedule, or None if there is none."""

    def update(self, definition: ScheduleDefinition) -> str:
        """Replace the whole schedule; raises NotFound if it does not exist."""

    def delete(self, name: str) -> bool:
        """Delete the schedule; False when it did not exist (which counts as done)."""

    def list(self) -> Iterator[ScheduleSummary]:
        """Every schedule in the backend's group, paging as needed."""
