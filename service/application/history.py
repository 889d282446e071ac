"""Execution history, alerts, run now and manual retry.

History outlives schedules: cancelling a task or deleting its schedule keeps its executions
(pruned only by the retention setting, see Recorder.prune). Run now and manual retry make an
execution row first (so the caller gets its id), then hand the filled-in Input to an invoker:
the proxy Lambda invoked asynchronously on AWS, the proxy handler in a worker thread locally.
Either way the outcome comes back through the recorder like any scheduled firing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Alert, Execution, Task
from service.application.paging import check_limit, is_uuid, newest_first, stamp
from service.application.recorder import MANUAL, new_execution
from service.application.tasks import input_for
from service.domain import executions as states
from service.domain import tasks as rules
from service.domain.clock import Clock, utc_now
from service.domain.errors import Conflict, InvalidRequest, NotFound
from service.tracing import current_traceparent


class Invoker(Protocol):
    """Starts one delivery of a filled-in Input, without waiting for it."""

    def fire(self, event: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def execution_view(execution: Execution) -> dict[str, Any]:
    """An execution as the API shows it. Target secrets never reach it (the proxy keeps the
    request); the response excerpt is the target's own."""
    return {
        "id": execution.id,
        "task_id": execution.task_id,
        "occurrence_key": states.occurrence_key(
            execution.task_id, execution.scheduled_time, execution.attempt
        ),
        "scheduled_time": states.format_scheduled_time(execution.scheduled_time),
        "attempt": execution.attempt,
        "trigger": execution.trigger,
        "status": execution.status,
        "status_code": execution.status_code,
        "latency_ms": execution.latency_ms,
        "late_seconds": execution.late_seconds,
        "error_kind": execution.error_kind,
        "error": execution.error,
        "response": {
            "headers": execution.response_headers or {},
            "body": execution.response_body,
            "truncated": execution.response_body_truncated,
        },
        "output": execution.output,
        "started_at": stamp(execution.started_at),
        "finished_at": stamp(execution.finished_at),
        "callback_deadline": stamp(execution.callback_deadline),
        "next_attempt_at": stamp(execution.retry_at),
        "created_at": stamp(execution.created_at),
        "updated_at": stamp(execution.updated_at),
    }


def alert_view(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "task_id": alert.task_id,
        "execution_id": alert.execution_id,
        "message": alert.message,
        "details": alert.details,
        "created_at": stamp(alert.created_at),
    }


class HistoryService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        invoker: Invoker,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self.sessions = sessions
        self.invoker = invoker
        self.clock = clock

    # --- reading -------------------------------------------------------------------------------

    def list(
        self,
        tenant_id: str,
        *,
        task_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Newest first. `since`/`until` bound the scheduled time (inclusive, exclusive)."""
        if status is not None and status not in states.EXECUTION_STATUSES:
            raise InvalidRequest("status", f"must be one of {', '.join(states.EXECUTION_STATUSES)}")
        check_limit(limit)
        query = select(Execution).where(Execution.tenant_id == tenant_id)
        if task_id is not None:
            query = query.where(Execution.task_id == task_id)
        if status is not None:
            query = query.where(Execution.status == status)
        if since is not None:
            query = query.where(Execution.scheduled_time >= since)
        if until is not None:
            query = query.where(Execution.scheduled_time < until)
        rows, next_cursor = newest_first(
            self.sessions, query, Execution, limit=limit, cursor=cursor
        )
        return Page([execution_view(row) for row in rows], next_cursor)

    def list_for_task(self, tenant_id: str, task_id: str, **filters: Any) -> Page:
        with self.sessions() as session:
            task = session.get(Task, task_id) if is_uuid(task_id) else None
            if task is None or task.tenant_id != tenant_id:
                raise NotFound(f"task {task_id} not found")
        return self.list(tenant_id, task_id=task_id, **filters)

    def get(self, tenant_id: str, execution_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            return execution_view(self._owned(session, tenant_id, execution_id))

    def alerts(self, tenant_id: str, *, limit: int = 50, cursor: str | None = None) -> Page:
        query = select(Alert).where(Alert.tenant_id == tenant_id)
        rows, next_cursor = newest_first(self.sessions, query, Alert, limit=limit, cursor=cursor)
        return Page([alert_view(row) for row in rows], next_cursor)

    # --- acting --------------------------------------------------------------------------------

    def run_now(self, tenant_id: str, task_id: str) -> dict[str, Any]:
        """Fire the task once now, outside its schedule (which is left alone)."""
        now = self.clock()
        with self.sessions() as session:
            task = session.get(Task, task_id) if is_uuid(task_id) else None
            if task is None or task.tenant_id != tenant_id:
                raise NotFound(f"task {task_id} not found")
            if task.status == rules.CANCELLED:
                raise Conflict(f"task {task_id} is cancelled and cannot run")
            # A manual occurrence is stamped to the microsecond so it never shares an
            # occurrence key (and so a receiver's dedupe) with a scheduled one.
            scheduled = now if now.microsecond else now.replace(microsecond=1)
            return self._start(session, task, scheduled, attempt=1, now=now)

    def retry(self, tenant_id: str, execution_id: str) -> dict[str, Any]:
        """Run a failed execution's occurrence again now, as its next attempt."""
        now = self.clock()
        with self.sessions() as session:
            execution = self._owned(session, tenant_id, execution_id)
            if execution.status not in states.TERMINAL or execution.status == states.SUCCESS:
                raise Conflict(
                    f"execution {execution_id} is {execution.status}; only failed, timed-out, "
                    "trigger-failed or skipped executions can be retried"
                )
            task = session.get(Task, execution.task_id)
            assert task is not None
            if task.status == rules.CANCELLED:
                raise Conflict(f"task {task.id} is cancelled and cannot run")
            latest = session.scalar(
                select(func.max(Execution.attempt)).where(
                    Execution.task_id == task.id,
                    Execution.scheduled_time == execution.scheduled_time,
                )
            )
            attempt = int(latest or execution.attempt) + 1
            return self._start(session, task, execution.scheduled_time, attempt=attempt, now=now)

    def _start(
        self, session: Session, task: Task, scheduled: datetime, *, attempt: int, now: datetime
    ) -> dict[str, Any]:
        execution = new_execution(task, scheduled, attempt, now, trigger=MANUAL)
        execution.planned_at = now
        session.add(execution)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise Conflict("that attempt was started already; try again") from None
        scheduled_text = states.format_scheduled_time(scheduled)
        document = json.loads(input_for(task, attempt=attempt, scheduled_time=scheduled_text))
        document["context"] = {
            "schedule_arn": task.schedule_arn or "manual",
            "scheduled_time": scheduled_text,
            "execution_id": execution.id,
            "attempt_number": 1,
        }
        traceparent = current_traceparent()
        if traceparent is not None:  # the proxy continues this trace (see service/tracing.py)
            document["traceparent"] = traceparent
        try:
            self.invoker.fire(document)
        except Exception:
            # Nothing was started: the row must not claim a run.
            session.execute(delete(Execution).where(Execution.id == execution.id))
            session.commit()
            raise
        return execution_view(execution)

    @staticmethod
    def _owned(session: Session, tenant_id: str, execution_id: str) -> Execution:
        execution = session.get(Execution, execution_id) if is_uuid(execution_id) else None
        if execution is None or execution.tenant_id != tenant_id:
            raise NotFound(f"execution {execution_id} not found")
        return execution
