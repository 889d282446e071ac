"""`service.recorder`: SQS batches of Lambda destination records, with partial batch failures
(issue "Firing path", item 2 and "Bad input"): nothing the recorder cannot apply is dropped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Execution
from service.application.tasks import TaskService
from service.container import Container, assemble
from service.recorder import process_batch, sweep
from service.settings import Settings
from tests.application.fakes import FaultyBackend, FrozenClock
from tests.support.invokers import RecordingInvoker


@pytest.fixture
def container(
    db_sessions: sessionmaker[Session], backend: FaultyBackend, clock: FrozenClock
) -> Container:
    settings = Settings(database_url="sqlite://", embedded_engine=False)
    return assemble(settings, db_sessions, backend, clock=clock, invoker=RecordingInvoker())


def batch(*bodies: Any) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": f"m{i}", "body": b if isinstance(b, str) else json.dumps(b)}
            for i, b in enumerate(bodies)
        ]
    }


def request_payload(task_id: str) -> dict[str, Any]:
    return {
        "version": 1,
        "task_id": task_id,
        "attempt": 1,
        "context": {"scheduled_time": "2026-11-23T06:00:00Z"},
    }


def test_a_failed_invocation_is_recorded_as_a_trigger_failure(
    container: Container, service: TaskService, tenant: str, db_sessions: sessionmaker[Session]
) -> None:
    task, _ = service.create(
        tenant,
        {
            "name": "x",
            "schedule": {"kind": "once", "at": "2026-11-23T06:00:00Z"},
            "target": {"url": "https://svc.internal/x"},
            "retry": {"max_attempts": 1},
        },
    )
    record = {
        "requestContext": {"condition": "RetriesExhausted"},
        "requestPayload": request_payload(task["id"]),
        "responsePayload": {"errorType": "ProxyConfigurationError", "errorMessage": "no secret"},
    }
    assert process_batch(batch(record), container) == {"batchItemFailures": []}
    with db_sessions() as session:
        (row,) = session.scalars(select(Execution)).all()
    assert (row.status, row.error_kind) == ("trigger_failed", "proxy_error")
    assert row.error == "ProxyConfigurationError: no secret"


def test_unusable_records_are_reported_one_by_one(
    container: Container, service: TaskService, tenant: str
) -> None:
    unreadable_event = {
        "requestContext": {"condition": "Success"},
        "requestPayload": {"nonsense": True},
        "responsePayload": {"status": "trigger_failed", "occurrence_key": None, "error": "bad"},
    }
    unknown_task = {
        "occurrence_key": "6f1c2f4e-1111-4222-8333-444455556666:2026-11-23T06:00:00Z:1",
        "status": "success",
    }
    answer = process_batch(
        batch("{not json", [1, 2], unreadable_event, unknown_task, {"requestContext": {}}),
        container,
    )
    assert answer == {"batchItemFailures": [{"itemIdentifier": f"m{i}"} for i in range(5)]}
    with pytest.raises(ValueError, match="Records"):
        process_batch({"nope": 1}, container)


def test_the_sweep_entry_point_reports_its_work(container: Container) -> None:
    result = sweep(container)
    assert result == {
        "timed_out": 0,
        "followups_finished": 0,
        "pruned": 0,
        "backfill_dispatched": 0,
        "stranded_runs_fired": 0,
        "reconcile_repairs": 0,
        "reconcile_errors": 0,
    }


def test_a_schedule_dead_letter_becomes_a_trigger_failure_and_is_retried(
    container: Container,
    service: TaskService,
    tenant: str,
    db_sessions: sessionmaker[Session],
    clock: Any,
) -> None:
    task, _ = service.create(
        tenant,
        {
            "name": "unreachable-proxy",
            "schedule": {"kind": "once", "at": "2026-11-23T06:00:00Z"},
            "target": {"url": "https://svc.internal/x"},
            "retry": {"max_attempts": 2},
        },
    )
    # Shaped as EventBridge Scheduler sends a dead-letter event: the Input it meant to deliver
    # as the body, the reason in message attributes.
    message = {
        "messageId": "dlq-1",
        "body": json.dumps({**request_payload(task["id"]), "tenant_id": tenant}),
        "messageAttributes": {
            "ERROR_CODE": {"stringValue": "AWS.Scheduler.Throttled", "dataType": "String"},
            "ERROR_MESSAGE": {"stringValue": "Rate exceeded", "dataType": "String"},
            "RETRY_ATTEMPTS": {"stringValue": "185", "dataType": "Number"},
        },
    }
    assert process_batch({"Records": [message]}, container) == {"batchItemFailures": []}
    with db_sessions() as session:
        (row,) = session.scalars(select(Execution)).all()
    assert (row.status, row.error_kind) == ("trigger_failed", "scheduler_dead_letter")
    assert row.error is not None and "AWS.Scheduler.Throttled: Rate exceeded" in row.error
    assert row.retry_at is not None  # a trigger failure is retried like any other failure
    broken = {**message, "messageId": "dlq-2", "body": "not json"}
    assert process_batch({"Records": [broken]}, container) == {
        "batchItemFailures": [{"itemIdentifier": "dlq-2"}]
    }


def test_a_direct_targets_dead_letter_names_its_occurrence_in_attributes(
    container: Container,
    service: TaskService,
    tenant: str,
    db_sessions: sessionmaker[Session],
) -> None:
    """Issue "Targets beyond HTTP" (S0-01, C-12): a direct target's dead letter carries the
    target's own payload (here plain text), so the occurrence comes from SCHEDULE_ARN and
    SCHEDULED_TIME; it shows in history as trigger_failed."""
    queue = "arn:aws:sqs:us-east-1:123456789012:jobs"
    task, _ = service.create(
        tenant,
        {
            "name": "to-a-queue",
            "schedule": {"kind": "once", "at": "2026-11-23T06:00:00Z"},
            "target": {"type": "sqs", "queue_arn": queue, "message": "plain text"},
            "retry": {"max_attempts": 1},
        },
    )

    def attribute(value: str) -> dict[str, str]:
        return {"stringValue": value, "dataType": "String"}

    schedule_arn = f"arn:aws:scheduler:us-east-1:123456789012:schedule/tb/{task['schedule_name']}"
    message = {
        "messageId": "dlq-direct",
        "body": "plain text",
        "messageAttributes": {
            "ERROR_CODE": attribute("AWS.SimpleQueueService.NonExistentQueue"),
            "ERROR_MESSAGE": attribute("The specified queue does not exist."),
            "RETRY_ATTEMPTS": attribute("2"),
            "SCHEDULE_ARN": attribute(schedule_arn),
            "SCHEDULED_TIME": attribute("2026-11-23T06:00:00Z"),
            "TARGET_ARN": attribute(queue),
        },
    }
    assert process_batch({"Records": [message]}, container) == {"batchItemFailures": []}
    with db_sessions() as session:
        (row,) = session.scalars(select(Execution)).all()
    assert (row.task_id, row.attempt, row.status) == (task["id"], 1, "trigger_failed")
    assert row.scheduled_time == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert row.error is not None and queue in row.error and "NonExistentQueue" in row.error
    unnamed = {
        **message,
        "messageId": "dlq-x",
        "messageAttributes": {
            "ERROR_CODE": attribute("X"),
            "SCHEDULE_ARN": attribute("arn:aws:scheduler:::other"),
        },
    }
    assert process_batch({"Records": [unnamed]}, container) == {
        "batchItemFailures": [{"itemIdentifier": "dlq-x"}]
    }
