"""Triggers on the eventbridge backend (moto): chains and pipelines go through the recorder
(the outcome record from SQS starts the next run by an asynchronous invoke), dependency gates
are pushed into the schedule's Input (the proxy never reads the database), backfill is paced by
the sweeper, and `GET /v1/schedules` reads ListSchedules + GetSchedule.

Seeds: S3-10 pipelines, S1-04 / S1-14 DEPENDENCY_FAILED, S1-07 schedule listing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy_lambda.handler import handle
from proxy_lambda.settings import ProxySettings
from proxy_lambda.transport import OutgoingRequest, TargetResponse
from service.adapters.db.models import Execution, Task
from service.adapters.scheduler.eventbridge import EventBridgeSchedulerBackend
from service.application.recorder import Recorder, outcome_from_record
from service.application.tasks import TaskService
from service.application.triggers import TriggerService
from service.domain.executions import format_scheduled_time, occurrence_key
from service.domain.provisioning import SchedulerBackend
from service.domain.tasks import fill_context
from tests.application.fakes import FrozenClock, add_tenant
from tests.support.invokers import RecordingInvoker

GROUP = "timebridge-triggers"
RATE = {"kind": "rate", "expression": "rate(1 hour)"}


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


@pytest.fixture
def invoker() -> RecordingInvoker:
    return RecordingInvoker()  # stands in for LambdaInvoker's asynchronous invoke


@pytest.fixture
def tasks(
    db_sessions: sessionmaker[Session], moto_backend: SchedulerBackend, clock: FrozenClock
) -> TaskService:
    return TaskService(db_sessions, moto_backend, clock=clock)


@pytest.fixture
def recorder(
    db_sessions: sessionmaker[Session],
    moto_backend: SchedulerBackend,
    clock: FrozenClock,
    invoker: RecordingInvoker,
) -> Recorder:
    recorder = Recorder(db_sessions, moto_backend, clock=clock, rng=random.Random(3))
    recorder.invoker = invoker
    return recorder


def create(tasks: TaskService, tenant: str, name: str, schedule: Any, **extra: Any) -> str:
    body = {"name": name, "schedule": schedule, "target": {"url": f"https://svc.internal/{name}"}}
    view, _ = tasks.create(tenant, {**body, **extra})
    return str(view["id"])


def record(task_id: str, when: Any, *, status: str = "success", code: int = 200) -> dict[str, Any]:
    """An outcome record as the proxy's Lambda destination puts it on the queue."""
    return {
        "version": 1,
        "occurrence_key": occurrence_key(task_id, when, 1),
        "task_id": task_id,
        "scheduled_time": format_scheduled_time(when),
        "attempt": 1,
        "started_at": format_scheduled_time(when + timedelta(seconds=1)),
        "status": status,
        "status_code": code,
        "latency_ms": 5,
        "response_headers": {},
        "response_body": "",
        "response_body_truncated": False,
        "error_kind": None,
        "error": None,
    }


def schedule_input(backend: SchedulerBackend, sessions: sessionmaker[Session], task_id: str) -> Any:
    with sessions() as session:
        task = session.get(Task, task_id)
        assert task is not None
        name = task.schedule_name
    info = backend.get(name)
    assert info is not None
    return info


def test_a_chain_on_aws_runs_through_the_recorder(
    db_sessions: sessionmaker[Session],
    tasks: TaskService,
    recorder: Recorder,
    invoker: RecordingInvoker,
    tenant: str,
    clock: FrozenClock,
) -> None:
    """S3-10: the upstream's outcome record (from SQS) starts the chain with one async invoke,
    once, with the outcome as the event; a redelivered record invokes nothing more."""
    extract = create(tasks, tenant, "extract", RATE)
    load = create(tasks, tenant, "load", {"kind": "after", "tasks": [extract], "on": "success"})
    audit = create(tasks, tenant, "audit", {"kind": "event", "topic": "task.extract.*"})
    when = clock() + timedelta(hours=1)
    clock.now = when + timedelta(seconds=2)

    recorder.record_outcome(outcome_from_record(record(extract, when)))
    recorder.record_outcome(outcome_from_record(record(extract, when)))  # redelivered
    recorder.sweep()

    fired = {event["task_id"]: event for event in invoker.events}
    assert sorted(fired) == sorted([load, audit]) and len(invoker.events) == 2
    assert fired[load]["event"]["topic"] == "task.extract.succeeded"
    assert fired[load]["target"]["body"]["event"]["payload"]["task_id"] == extract
    with db_sessions() as session:
        rows = session.scalars(select(Execution).where(Execution.task_id == load)).all()
        assert [(r.trigger, r.status) for r in rows] == [("chain", "pending")]


def test_dependency_gate_is_pushed_into_the_eventbridge_schedule(
    db_sessions: sessionmaker[Session],
    moto_backend: SchedulerBackend,
    tasks: TaskService,
    recorder: Recorder,
    tenant: str,
    clock: FrozenClock,
) -> None:
    """S1-14 DEPENDENCY_FAILED on AWS: the recorder flips the schedule's Input; the proxy,
    given that Input, reports the occurrence skipped and calls nothing."""
    extract = create(tasks, tenant, "extract", RATE)
    report = create(tasks, tenant, "report", RATE, depends_on=[extract])
    info = schedule_input(moto_backend, db_sessions, report)
    assert json.loads(info.definition.input)["gate"] == "DEPENDENCY_FAILED"

    def no_call(request: OutgoingRequest, /) -> TargetResponse:
        raise AssertionError("a gated occurrence must not call its target")

    when = clock() + timedelta(hours=1)
    event = json.loads(
        fill_context(
            info.definition.input,
            schedule_arn=info.arn,
            scheduled_time=format_scheduled_time(when),
            execution_id="e-1",
        )
    )
    outcome = handle(event, send=no_call, settings=ProxySettings())
    assert outcome["status"] == "skipped" and outcome["error_kind"] == "DEPENDENCY_FAILED"
    recorder.record_outcome(outcome_from_record(outcome))
    with db_sessions() as session:
        [row] = session.scalars(select(Execution).where(Execution.task_id == report)).all()
        assert (row.status, row.error_kind) == ("skipped", "DEPENDENCY_FAILED")

    clock.now = when + timedelta(seconds=5)
    recorder.record_outcome(outcome_from_record(record(extract, when)))
    info = schedule_input(moto_backend, db_sessions, report)
    assert "gate" not in json.loads(info.definition.input)

    later = when + timedelta(hours=1)
    clock.now = later + timedelta(seconds=5)
    recorder.record_outcome(outcome_from_record(record(extract, later, status="failed", code=400)))
    info = schedule_input(moto_backend, db_sessions, report)
    assert json.loads(info.definition.input)["gate"] == "DEPENDENCY_FAILED"


def test_schedules_listing_reads_the_backend_scoped_by_tenant(
    db_sessions: sessionmaker[Session],
    moto_backend: SchedulerBackend,
    tasks: TaskService,
    tenant: str,
) -> None:
    """S1-07 schedule listing: name, ARN, expression, time zone, state, task id, by pages."""
    other = add_tenant(db_sessions, "team-b")
    mine = create(
        tasks, tenant, "mine", {"kind": "daily", "time": "09:00", "timezone": "Asia/Seoul"}
    )
    paused = create(tasks, tenant, "paused", RATE)
    tasks.pause(tenant, paused)
    theirs = create(tasks, other, "theirs", RATE)
    create(tasks, tenant, "evt", {"kind": "event", "topic": "a.b"})  # nothing provisioned
    service = TriggerService(db_sessions, None, moto_backend, background=False)

    page = service.schedules(tenant, everyone=False, limit=1)
    assert len(page["items"]) == 1 and page["next_cursor"] is not None
    rest = service.schedules(tenant, everyone=False, limit=1, cursor=page["next_cursor"])
    assert rest["next_cursor"] is None
    items = {item["task_id"]: item for item in page["items"] + rest["items"]}
    assert set(items) == {mine, paused}
    assert items[mine]["expression"] == "cron(0 9 * * ? *)"
    assert items[mine]["timezone"] == "Asia/Seoul"
    assert items[mine]["arn"].endswith(f"schedule/{GROUP}/{items[mine]['name']}")
    assert (items[mine]["state"], items[paused]["state"]) == ("ENABLED", "DISABLED")
    everything = service.schedules(tenant, everyone=True)
    assert {item["task_id"] for item in everything["items"]} == {mine, paused, theirs}


def test_backfill_on_aws_is_dispatched_by_the_sweeper_in_paced_slices(
    db_sessions: sessionmaker[Session],
    moto_backend: SchedulerBackend,
    tasks: TaskService,
    invoker: RecordingInvoker,
    tenant: str,
    clock: FrozenClock,
) -> None:
    task_id = create(tasks, tenant, "hourly", {"kind": "cron", "expression": "0 * * * *"})
    sleeps: list[float] = []
    service = TriggerService(
        db_sessions, invoker, moto_backend, clock=clock, background=False, sleep=sleeps.append
    )
    now = clock()
    result = service.backfill(
        tenant,
        task_id,
        {"from": format_scheduled_time(now - timedelta(hours=3)), "to": format_scheduled_time(now)},
    )
    assert result["queued"] == 3
    assert invoker.events == []  # nothing fired by the request itself
    assert service.dispatch_backfill(limit=2) == 2
    assert service.dispatch_backfill(limit=2) == 1
    assert [e["context"]["scheduled_time"] for e in invoker.events] == [
        "2026-11-23T02:00:00Z",
        "2026-11-23T03:00:00Z",
        "2026-11-23T04:00:00Z",
    ]
    assert sleeps == [0.5]  # 2 per second (the default), between fires within a slice


def test_an_event_target_on_aws_publishes_through_the_proxy_and_the_recorder(
    db_sessions: sessionmaker[Session],
    moto_backend: SchedulerBackend,
    tasks: TaskService,
    recorder: Recorder,
    invoker: RecordingInvoker,
    tenant: str,
    clock: FrozenClock,
) -> None:
    """The `event` target (issue 11) on AWS: the schedule's Input reaches the proxy, which
    calls nothing and returns the rendered topic and payload; the recorder publishes them."""
    source = create(
        tasks,
        tenant,
        "announce",
        RATE,
        target={"type": "event", "topic": "reports.ready", "payload": {"at": "{{scheduled_time}}"}},
    )
    listener = create(tasks, tenant, "listener", {"kind": "event", "topic": "reports.*"})
    info = schedule_input(moto_backend, db_sessions, source)
    when = clock() + timedelta(hours=1)
    event = json.loads(
        fill_context(
            info.definition.input,
            schedule_arn=info.arn,
            scheduled_time=format_scheduled_time(when),
            execution_id="e-9",
        )
    )

    def no_call(request: OutgoingRequest, /) -> TargetResponse:
        raise AssertionError("an event target calls nothing")

    outcome = handle(event, send=no_call, settings=ProxySettings())
    assert outcome["published"] == {
        "topic": "reports.ready",
        "payload": {"at": format_scheduled_time(when)},
    }
    clock.now = when + timedelta(seconds=1)
    recorder.record_outcome(outcome_from_record(outcome))
    recorder.record_outcome(outcome_from_record(outcome))  # redelivered by SQS
    [fired] = invoker.events
    assert fired["task_id"] == listener
    assert fired["event"] == {
        "topic": "reports.ready",
        "payload": {"at": format_scheduled_time(when)},
    }
