"""The recorder (issue "Firing path", SEEDS S0-04 history, S0-05 callbacks, S1-07 retries,
S4-03 lateness alerts): outcomes, callbacks and deadlines become executions exactly once, and
executions move tasks (retries, chained occurrences, completion). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Alert, Execution, Task
from service.adapters.scheduler.eventbridge import EventBridgeSchedulerBackend
from service.application.recorder import (
    MalformedRecord,
    Recorder,
    outcome_from_record,
)
from service.application.tasks import TaskService
from service.domain.errors import CallbackClosed, NotFound
from service.domain.executions import format_scheduled_time, occurrence_key
from service.domain.provisioning import SchedulerBackend, retry_schedule_name
from tests.application.fakes import FaultyBackend, FrozenClock

GROUP = "timebridge-test"


class ListSink:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []

    def publish(self, alert: Any) -> None:
        self.alerts.append(dict(alert))


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def recorder(
    db_sessions: sessionmaker[Session], backend: FaultyBackend, clock: FrozenClock, sink: ListSink
) -> Recorder:
    return Recorder(db_sessions, backend, clock=clock, alerts=sink, rng=random.Random(7))


def task_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "report",
        "schedule": {"kind": "once", "at": "2026-11-23T06:00:00Z"},
        "target": {"url": "https://svc.internal/run"},
        "retry": {"max_attempts": 3, "base_delay_seconds": 10, "max_delay_seconds": 60},
    }
    body.update(changes)
    return body


def outcome(
    task_id: str,
    scheduled: datetime,
    *,
    attempt: int = 1,
    status: str = "success",
    code: int | None = 200,
    started: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    started = started or scheduled + timedelta(seconds=1)
    return {
        "version": 1,
        "occurrence_key": occurrence_key(task_id, scheduled, attempt),
        "task_id": task_id,
        "scheduled_time": format_scheduled_time(scheduled),
        "attempt": attempt,
        "started_at": format_scheduled_time(started),
        "status": status,
        "status_code": code,
        "latency_ms": 12,
        "response_headers": headers or {"content-type": "text/plain"},
        "response_body": "ok",
        "response_body_truncated": False,
        "error_kind": None,
        "error": None,
    }


def executions(sessions: sessionmaker[Session], task_id: str) -> list[Execution]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Execution).where(Execution.task_id == task_id).order_by(Execution.attempt)
            )
        )


def task_row(sessions: sessionmaker[Session], task_id: str) -> Task:
    with sessions() as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task


AT = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def test_the_same_record_twice_makes_one_execution_and_completes_a_one_time_task(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
) -> None:
    task, _ = service.create(tenant, task_body())
    clock.now = AT + timedelta(seconds=2)
    record = outcome(task["id"], AT)
    first = recorder.record_outcome(outcome_from_record(record))
    second = recorder.record_outcome(outcome_from_record(record))
    assert first == second
    rows = executions(db_sessions, task["id"])
    assert [(r.attempt, r.status, r.status_code, r.late_seconds) for r in rows] == [
        (1, "success", 200, 1.0)
    ]
    assert task_row(db_sessions, task["id"]).status == "completed"


def test_a_5xx_schedules_a_retry_with_backoff_and_the_original_occurrence(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    backend: FaultyBackend,
    db_sessions: sessionmaker[Session],
) -> None:
    task, _ = service.create(tenant, task_body())
    clock.now = AT + timedelta(seconds=2)
    recorder.record_outcome(outcome_from_record(outcome(task["id"], AT, status="failed", code=503)))
    (row,) = executions(db_sessions, task["id"])
    assert row.status == "failed" and row.retry_at is not None and not row.followups_pending
    # Full jitter under a 10 s ceiling, rounded up to whole seconds, at least 1 s away.
    assert clock.now < row.retry_at <= clock.now + timedelta(seconds=12)
    name = retry_schedule_name(task["id"], AT, 2)
    info = backend.get(name)
    assert info is not None
    assert info.definition.expression == f"at({row.retry_at:%Y-%m-%dT%H:%M:%S})"
    assert info.definition.expression_timezone == "UTC"
    assert info.definition.delete_after_completion
    document = json.loads(info.definition.input)
    assert document["attempt"] == 2
    assert document["context"]["scheduled_time"] == "2026-11-23T06:00:00Z"
    assert document["context"]["execution_id"] == "<aws.scheduler.execution-id>"
    assert task_row(db_sessions, task["id"]).status == "scheduled"  # not over yet


def test_retry_after_is_honoured(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
) -> None:
    task, _ = service.create(tenant, task_body())
    clock.now = AT
    record = outcome(task["id"], AT, status="failed", code=429, headers={"retry-after": "600"})
    recorder.record_outcome(outcome_from_record(record))
    (row,) = executions(db_sessions, task["id"])
    assert row.retry_at is not None
    assert row.retry_at >= AT + timedelta(seconds=600)


def test_the_last_attempt_fails_the_task_and_raises_one_alert(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    sink: ListSink,
    db_sessions: sessionmaker[Session],
) -> None:
    task, _ = service.create(tenant, task_body())
    clock.now = AT
    for attempt in (1, 2, 3):
        record = outcome(task["id"], AT, attempt=attempt, status="failed", code=500)
        recorder.record_outcome(outcome_from_record(record))
        recorder.record_outcome(outcome_from_record(record))  # duplicates change nothing
    rows = executions(db_sessions, task["id"])
    assert [(r.attempt, r.status, r.retry_at is not None) for r in rows] == [
        (1, "failed", True),
        (2, "failed", True),
        (3, "failed", False),
    ]
    assert rows[1].trigger == "retry"
    assert task_row(db_sessions, task["id"]).status == "failed"
    assert [a["kind"] for a in sink.alerts] == ["final_failure"]
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Alert)) == 1


def test_a_4xx_is_not_retried(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
) -> None:
    task, _ = service.create(tenant, task_body())
    clock.now = AT
    recorder.record_outcome(outcome_from_record(outcome(task["id"], AT, status="failed", code=404)))
    (row,) = executions(db_sessions, task["id"])
    assert row.retry_at is None
    assert task_row(db_sessions, task["id"]).status == "failed"


def test_a_late_start_raises_an_alert_beyond_the_threshold(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    sink: ListSink,
    db_sessions: sessionmaker[Session],
) -> None:
    task, _ = service.create(tenant, task_body())
    clock.now = AT + timedelta(minutes=5)
    late = outcome(task["id"], AT, started=AT + timedelta(seconds=121))
    recorder.record_outcome(outcome_from_record(late))
    (row,) = executions(db_sessions, task["id"])
    assert row.late_seconds == 121.0
    assert [a["kind"] for a in sink.alerts] == ["late"]


def test_callback_after_the_outcome_walks_the_states_and_terminal_rejects(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
) -> None:
    task, _ = service.create(tenant, task_body(callback={"enabled": True, "timeout_seconds": 60}))
    clock.now = AT
    recorder.record_outcome(outcome_from_record(outcome(task["id"], AT, code=202)))
    (row,) = executions(db_sessions, task["id"])
    assert row.status == "pending" and row.callback_deadline == AT + timedelta(seconds=60)
    key = occurrence_key(task["id"], AT, 1)
    assert recorder.report_callback(key, "processing")["status"] == "processing"
    assert recorder.report_callback(key, "processing")["status"] == "processing"
    assert recorder.report_callback(key, "success", output={"rows": 3})["status"] == "success"
    with pytest.raises(CallbackClosed):
        recorder.report_callback(key, "failed")
    (row,) = executions(db_sessions, task["id"])
    assert row.status == "success" and row.output == {"result": {"rows": 3}}
    assert task_row(db_sessions, task["id"]).status == "completed"


def test_callback_before_the_outcome_record_stands(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
) -> None:
    task, _ = service.create(tenant, task_body(callback={"enabled": True}))
    clock.now = AT
    key = occurrence_key(task["id"], AT, 1)
    recorder.report_callback(key, "success")
    recorder.record_outcome(outcome_from_record(outcome(task["id"], AT, code=202)))
    (row,) = executions(db_sessions, task["id"])
    assert (row.status, row.status_code, row.outcome_recorded) == ("success", 202, True)
    assert task_row(db_sessions, task["id"]).status == "completed"


def test_callbacks_for_unknown_tasks_or_tasks_without_callbacks_are_not_found(
    service: TaskService, recorder: Recorder, tenant: str
) -> None:
    task, _ = service.create(tenant, task_body())  # callbacks off
    with pytest.raises(NotFound):
        recorder.report_callback(occurrence_key(task["id"], AT, 1), "success")
    with pytest.raises(NotFound):
        recorder.report_callback("not-a-key", "success")


def test_the_sweeper_times_out_a_silent_callback_and_retries_it(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    backend: FaultyBackend,
    db_sessions: sessionmaker[Session],
) -> None:
    task, _ = service.create(tenant, task_body(callback={"enabled": True, "timeout_seconds": 60}))
    clock.now = AT
    recorder.record_outcome(outcome_from_record(outcome(task["id"], AT, code=202)))
    clock.advance(seconds=30)
    assert recorder.sweep()["timed_out"] == 0
    clock.advance(seconds=31)
    assert recorder.sweep()["timed_out"] == 1
    (row,) = executions(db_sessions, task["id"])
    assert row.status == "timeout" and row.error_kind == "callback_timeout"
    assert row.retry_at is not None
    assert backend.get(retry_schedule_name(task["id"], AT, 2)) is not None
    with pytest.raises(CallbackClosed):
        recorder.report_callback(occurrence_key(task["id"], AT, 1), "success")


def test_a_failed_follow_up_is_finished_by_the_redelivery(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    backend: FaultyBackend,
    db_sessions: sessionmaker[Session],
) -> None:
    task, _ = service.create(tenant, task_body())
    clock.now = AT
    record = outcome_from_record(outcome(task["id"], AT, status="failed", code=502))
    backend.fault = "raise"  # the retry schedule cannot be made this time
    with pytest.raises(Exception, match="injected"):
        recorder.record_outcome(record)
    (row,) = executions(db_sessions, task["id"])
    assert row.followups_pending and row.retry_at is not None
    recorder.record_outcome(record)  # SQS delivers it again
    (again,) = executions(db_sessions, task["id"])
    assert not again.followups_pending and again.retry_at == row.retry_at
    assert backend.get(retry_schedule_name(task["id"], AT, 2)) is not None


def test_a_chained_task_gets_its_next_occurrence_once(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    backend: FaultyBackend,
    db_sessions: sessionmaker[Session],
) -> None:
    schedule = {
        "kind": "rrule",
        "rrule": "FREQ=DAILY;INTERVAL=2;COUNT=2;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
        "dtstart": "2026-11-24T09:00:00",
        "timezone": "Asia/Seoul",
    }
    task, _ = service.create(tenant, task_body(schedule=schedule))
    assert task["mode"] == "chained"
    first = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 09:00 in Seoul
    info = backend.get(task["schedule_name"])
    assert info is not None and info.definition.expression == "at(2026-11-24T00:00:00)"
    clock.now = first + timedelta(seconds=1)
    record = outcome_from_record(outcome(task["id"], first))
    recorder.record_outcome(record)
    recorder.record_outcome(record)
    info = backend.get(task["schedule_name"])
    assert info is not None and info.definition.expression == "at(2026-11-26T00:00:00)"
    row = task_row(db_sessions, task["id"])
    assert row.status == "scheduled" and row.version == 2
    second = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    clock.now = second + timedelta(seconds=1)
    recorder.record_outcome(outcome_from_record(outcome(task["id"], second)))
    assert task_row(db_sessions, task["id"]).status == "completed"


def test_fixed_delay_measures_from_completion(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    backend: FaultyBackend,
) -> None:
    clock.now = AT
    task, _ = service.create(tenant, task_body(schedule={"kind": "fixed_delay", "seconds": 300}))
    first = AT + timedelta(seconds=300)
    clock.now = first + timedelta(seconds=42)  # the run took 42 s
    recorder.record_outcome(outcome_from_record(outcome(task["id"], first)))
    info = backend.get(task["schedule_name"])
    assert info is not None
    assert info.definition.expression == "at(2026-11-23T06:10:42)"


def test_records_for_unknown_tasks_are_refused(recorder: Recorder) -> None:
    with pytest.raises(MalformedRecord):
        recorder.record_outcome(
            outcome_from_record(outcome("6f1c2f4e-1111-4222-8333-444455556666", AT))
        )
    with pytest.raises(MalformedRecord):
        outcome_from_record({"status": "success"})


def test_cancel_removes_pending_retry_schedules(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    backend: FaultyBackend,
) -> None:
    task, _ = service.create(tenant, task_body())
    clock.now = AT
    recorder.record_outcome(outcome_from_record(outcome(task["id"], AT, status="failed", code=500)))
    name = retry_schedule_name(task["id"], AT, 2)
    assert backend.get(name) is not None
    service.cancel(tenant, task["id"])
    assert backend.get(name) is None


@pytest.fixture
def moto_backend(aws_env: None) -> Iterator[SchedulerBackend]:
    from moto import mock_aws

    from service.adapters.scheduler.eventbridge import make_scheduler_client

    with mock_aws():
        client = make_scheduler_client()
        client.create_schedule_group(Name=GROUP)
        yield EventBridgeSchedulerBackend(
            group=GROUP,
            target_arn="arn:aws:lambda:us-east-1:123456789012:function:proxy",
            role_arn="arn:aws:iam::123456789012:role/scheduler",
            client=client,
        )


def test_the_retry_schedule_lands_in_eventbridge(
    db_sessions: sessionmaker[Session],
    moto_backend: SchedulerBackend,
    tenant: str,
    clock: FrozenClock,
) -> None:
    service = TaskService(db_sessions, moto_backend, clock=clock)
    recorder = Recorder(db_sessions, moto_backend, clock=clock, rng=random.Random(1))
    task, _ = service.create(tenant, task_body())
    clock.now = AT
    recorder.record_outcome(
        outcome_from_record(outcome(task["id"], AT, status="timeout", code=None))
    )
    (row,) = executions(db_sessions, task["id"])
    info = moto_backend.get(retry_schedule_name(task["id"], AT, 2))
    assert info is not None and row.retry_at is not None
    assert info.definition.expression == f"at({row.retry_at:%Y-%m-%dT%H:%M:%S})"
    assert json.loads(info.definition.input)["attempt"] == 2


def test_a_batch_records_each_occurrence_once_like_single_records(
    service: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
    sink: ListSink,
) -> None:
    """The local engine's batched path (one transaction, reads and inserts in bulk) gives the
    same executions, completions, retries and alerts as recording one by one; a copy of an
    outcome in the same batch, or of one recorded before, changes nothing."""
    done, _ = service.create(tenant, task_body(name="done"))
    retried, _ = service.create(tenant, task_body(name="retried"))
    late, _ = service.create(tenant, task_body(name="late"))
    clock.now = AT + timedelta(minutes=10)
    recorder.record_outcome(outcome_from_record(outcome(done["id"], AT)))
    batch = [
        outcome(done["id"], AT),  # recorded before
        outcome(retried["id"], AT, status="failed", code=503),
        outcome(retried["id"], AT, status="failed", code=503),  # a copy in the same batch
        outcome(late["id"], AT, started=AT + timedelta(minutes=5)),
    ]
    ids = recorder.record_outcomes([outcome_from_record(r) for r in batch])
    assert ids[1] == ids[2] and len(set(ids)) == 3
    assert [(r.attempt, r.status) for r in executions(db_sessions, done["id"])] == [(1, "success")]
    (failed,) = executions(db_sessions, retried["id"])
    assert (failed.status, failed.status_code, failed.retry_at is not None) == ("failed", 503, True)
    (started_late,) = executions(db_sessions, late["id"])
    assert started_late.late_seconds == 300.0
    assert [a["kind"] for a in sink.alerts] == ["late"]
    assert task_row(db_sessions, late["id"]).status == "completed"
    assert task_row(db_sessions, retried["id"]).status == "scheduled"
