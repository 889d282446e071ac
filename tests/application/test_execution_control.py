"""Execution control on the local engine and, through the recorder, on EventBridge (issue 9
part B): overlap policies, concurrency limits, the tenant cap, execution windows (skip and
defer, across daylight saving) and priority order. The local engine runs the real proxy handler
and recorder; only the target is a stand-in. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy_lambda.settings import ProxySettings
from proxy_lambda.signing import parse_signing_secrets
from proxy_lambda.transport import OutgoingRequest, TargetResponse
from service.adapters.db.models import Execution, Task
from service.adapters.invoke import LocalDelivery
from service.adapters.scheduler.engine import LocalEngine
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.control import ConcurrencyGate
from service.application.recorder import Recorder, outcome_from_record
from service.application.tasks import TaskService
from service.domain.executions import format_scheduled_time, occurrence_key
from service.domain.provisioning import SchedulerBackend, retry_schedule_name
from tests.application.fakes import FrozenClock, add_tenant

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


class Target:
    """The called service: answers 202 (work accepted, callback to come) or 200, and keeps the
    scheduled time of every request, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (path, Timebridge-Scheduled-Time)

    def __call__(self, request: OutgoingRequest) -> TargetResponse:
        self.calls.append((request.target, request.headers["Timebridge-Scheduled-Time"]))
        status = 202 if "slow" in request.target else 200
        return TargetResponse(status, {}, b"", False)

    @property
    def times(self) -> list[str]:
        return [when for _, when in self.calls]


@dataclass
class Local:
    service: TaskService
    recorder: Recorder
    engine: LocalEngine
    gate: ConcurrencyGate
    target: Target
    clock: FrozenClock
    tenant: str
    sessions: sessionmaker[Session]

    def task(self, path: str = "/slow", **fields: Any) -> str:
        body = {
            "name": f"task{path}",
            "schedule": {"kind": "cron", "expression": "* * * * *"},
            "target": {"url": f"http://127.0.0.1:9{path}"},
            "callback": {"enabled": "slow" in path},
            **fields,
        }
        view, _ = self.service.create(self.tenant, body)
        return str(view["id"])

    def tick(self, **delta: float) -> None:
        self.clock.advance(**delta)
        self.engine.run_once()

    def executions(self, task_id: str) -> list[Execution]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(Execution)
                    .where(Execution.task_id == task_id)
                    .order_by(Execution.scheduled_time, Execution.attempt)
                )
            )

    def finish(self, task_id: str, scheduled: datetime) -> None:
        self.recorder.report_callback(occurrence_key(task_id, scheduled, 1), "success")


@pytest.fixture
def local(db_sessions: sessionmaker[Session]) -> Local:
    clock = FrozenClock(datetime(2026, 11, 23, 5, 0, tzinfo=UTC))  # a Monday
    backend = LocalSchedulerBackend(db_sessions, clock=clock)
    recorder = Recorder(db_sessions, backend, clock=clock)
    target = Target()
    settings = ProxySettings(
        signing_keys=parse_signing_secrets(SECRET),
        allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),),
    )
    engine = LocalEngine(db_sessions, LocalDelivery(recorder, settings, send=target), clock=clock)
    gate = ConcurrencyGate(db_sessions, recorder, clock=clock)
    engine.gate = gate
    service = TaskService(db_sessions, backend, clock=clock)
    return Local(
        service, recorder, engine, gate, target, clock, add_tenant(db_sessions), db_sessions
    )


def at(hour: int, minute: int = 0, day: int = 23, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def states(executions: list[Execution]) -> list[tuple[str, str, str | None]]:
    return [(format_scheduled_time(e.scheduled_time), e.status, e.error_kind) for e in executions]


# --- overlap and concurrency (S1-04 concurrency caps, S1-14 TASK_LOCKED) ---------------------


def test_overlap_allow_runs_every_occurrence_while_the_previous_one_runs(local: Local) -> None:
    """S1-04: the default policy starts each occurrence, running or not."""
    task = local.task()
    local.tick(minutes=1)
    local.tick(minutes=1)
    assert local.target.times == ["2026-11-23T05:01:00Z", "2026-11-23T05:02:00Z"]
    assert [e.status for e in local.executions(task)] == ["pending", "pending"]


def test_overlap_skip_records_task_locked_without_calling_the_target(local: Local) -> None:
    """S1-14 TASK_LOCKED: an occurrence that finds the previous execution still awaiting its
    callback is recorded as skipped, and the target is not called; once the running one ends,
    the next occurrence runs."""
    task = local.task(overlap="skip")
    local.tick(minutes=1)
    local.tick(minutes=1)
    assert local.target.times == ["2026-11-23T05:01:00Z"]
    assert states(local.executions(task)) == [
        ("2026-11-23T05:01:00Z", "pending", None),
        ("2026-11-23T05:02:00Z", "skipped", "TASK_LOCKED"),
    ]
    local.finish(task, at(5, 1))
    local.tick(minutes=1)
    assert local.target.times[-1] == "2026-11-23T05:03:00Z"


def test_overlap_buffer_one_keeps_one_waiting_occurrence_and_skips_the_rest(local: Local) -> None:
    """S1-04 / S1-14: the first occurrence that finds the task busy waits and runs when the
    running one ends; a second one meanwhile is skipped with TASK_LOCKED."""
    task = local.task(overlap="buffer_one")
    local.tick(minutes=1)  # 05:01 runs and awaits its callback
    local.tick(minutes=1)  # 05:02 waits
    local.tick(minutes=1)  # 05:03 is skipped
    assert local.target.times == ["2026-11-23T05:01:00Z"]
    local.finish(task, at(5, 1))
    local.tick(seconds=2)  # the waiting one is looked at again
    assert local.target.times == ["2026-11-23T05:01:00Z", "2026-11-23T05:02:00Z"]
    assert states(local.executions(task)) == [
        ("2026-11-23T05:01:00Z", "success", None),
        ("2026-11-23T05:02:00Z", "pending", None),
        ("2026-11-23T05:03:00Z", "skipped", "TASK_LOCKED"),
    ]


def test_max_concurrency_lets_that_many_run_and_skips_the_next(local: Local) -> None:
    """S1-04 concurrency cap per task: two may run at once, the third is TASK_LOCKED."""
    task = local.task(max_concurrency=2)
    for _ in range(3):
        local.tick(minutes=1)
    assert [s for _, s, _ in states(local.executions(task))] == ["pending", "pending", "skipped"]
    assert len(local.target.calls) == 2


def test_plain_calls_that_ended_do_not_hold_the_task(local: Local) -> None:
    """S1-04: without callbacks a call's execution ends when its answer is recorded, so
    `skip` skips nothing when every call returns within the interval."""
    task = local.task("/quick", overlap="skip")
    for _ in range(3):
        local.tick(minutes=1)
    assert [e.status for e in local.executions(task)] == ["success"] * 3


def test_the_tenant_cap_makes_other_tasks_wait_for_a_free_slot(local: Local) -> None:
    """S1-04 / S1-12 concurrency cap per tenant: with a cap of one running execution, a second
    task's occurrence waits in the outbox (not skipped) until the first ends, and another
    tenant is not affected."""
    local.gate.tenant_cap = 1
    first = local.task("/slow-a", schedule={"kind": "cron", "expression": "1 5 * * *"})
    second = local.task("/slow-b", schedule={"kind": "cron", "expression": "2 5 * * *"})
    other_tenant = add_tenant(local.sessions, "team-b")
    view, _ = local.service.create(
        other_tenant,
        {
            "name": "theirs",
            "schedule": {"kind": "cron", "expression": "2 5 * * *"},
            "target": {"url": "http://127.0.0.1:9/slow-c"},
            "callback": {"enabled": True},
        },
    )
    local.tick(minutes=1)
    local.tick(minutes=1)
    assert [path for path, _ in local.target.calls] == ["/slow-a", "/slow-c"]
    assert local.executions(second) == []
    local.finish(first, at(5, 1))
    local.tick(seconds=2)
    assert [path for path, _ in local.target.calls] == ["/slow-a", "/slow-c", "/slow-b"]
    assert states(local.executions(second)) == [("2026-11-23T05:02:00Z", "pending", None)]
    assert view["id"] != second


# --- execution windows (S1-04) ------------------------------------------------------------------

BERLIN_DAY = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:00", "end": "20:00"}


def test_an_occurrence_outside_the_window_is_skipped_without_a_call(local: Local) -> None:
    """S1-04 window, skip: an hourly UTC schedule with a Berlin window (another zone, so it is
    checked at fire time by the proxy): 05:00Z is 06:00 Berlin (skipped, OUTSIDE_WINDOW),
    06:00Z is 07:00 Berlin (runs)."""
    window = {**BERLIN_DAY, "timezone": "Europe/Berlin"}
    task = local.task(
        "/quick", schedule={"kind": "cron", "expression": "30 * * * *"}, window=window
    )
    local.tick(minutes=30)
    local.tick(hours=1)
    assert local.target.times == ["2026-11-23T06:30:00Z"]
    assert states(local.executions(task)) == [
        ("2026-11-23T05:30:00Z", "skipped", "OUTSIDE_WINDOW"),
        ("2026-11-23T06:30:00Z", "success", None),
    ]


def test_deferred_occurrences_run_once_at_the_window_start(local: Local) -> None:
    """S1-04 window, defer: 04:30Z and 05:30Z (05:30 and 06:30 Berlin) are both deferred to
    the window's 07:00 Berlin = 06:00Z, where they make one run; 06:30Z runs as scheduled."""
    local.clock.now = at(4, 0)
    window = {**BERLIN_DAY, "timezone": "Europe/Berlin"}
    task = local.task(
        "/quick",
        schedule={"kind": "cron", "expression": "30 * * * *"},
        window=window,
        outside_window="defer",
    )
    local.tick(minutes=30)
    local.tick(hours=1)
    assert local.target.times == []
    local.tick(minutes=30)
    local.tick(minutes=30)
    assert local.target.times == ["2026-11-23T06:00:00Z", "2026-11-23T06:30:00Z"]
    executions = states(local.executions(task))
    assert executions == [
        ("2026-11-23T04:30:00Z", "skipped", "OUTSIDE_WINDOW"),
        ("2026-11-23T05:30:00Z", "skipped", "OUTSIDE_WINDOW"),
        ("2026-11-23T06:00:00Z", "success", None),
        ("2026-11-23T06:30:00Z", "success", None),
    ]
    with local.sessions() as session:
        errors = session.scalars(
            select(Execution.error)
            .where(Execution.task_id == task)
            .order_by(Execution.scheduled_time)
        )
        assert (
            list(errors)[:2]
            == ["outside the execution window; deferred to 2026-11-23T06:00:00Z"] * 2
        )


def test_a_defer_into_the_spring_forward_gap_runs_when_the_clocks_resume(local: Local) -> None:
    """S1-04 window, defer, across DST: New York skips 02:00-03:00 on 2026-03-08. A window that
    starts at 02:30 opens at 03:00 EDT (07:00Z): the 06:20Z occurrence (01:20 EST) runs then."""
    local.clock.now = at(6, 0, day=8, month=3)
    window = {"days": ["sun"], "start": "02:30", "end": "05:00", "timezone": "America/New_York"}
    task = local.task(
        "/quick",
        schedule={"kind": "cron", "expression": "20 * * * *"},
        window=window,
        outside_window="defer",
    )
    local.tick(minutes=20)  # 06:20Z, outside: deferred
    local.tick(minutes=40)  # 07:00Z: the window opens
    local.tick(minutes=20)  # 07:20Z (03:20 EDT), inside
    assert local.target.times == ["2026-03-08T07:00:00Z", "2026-03-08T07:20:00Z"]
    assert states(local.executions(task))[0] == (
        "2026-03-08T06:20:00Z",
        "skipped",
        "OUTSIDE_WINDOW",
    )


def test_a_window_in_the_schedules_zone_is_compiled_into_its_cron(local: Local) -> None:
    """S1-04: the window is stated in the provisioned cron(), so nothing outside it fires."""
    window = {**BERLIN_DAY, "timezone": "Europe/Berlin"}
    view, _ = local.service.create(
        local.tenant,
        {
            "name": "compiled",
            "schedule": {"kind": "cron", "expression": "0 * * * *", "timezone": "Europe/Berlin"},
            "target": {"url": "http://127.0.0.1:9/quick"},
            "window": window,
        },
    )
    assert view["aws_expression"] == "cron(0 7,8,9,10,11,12,13,14,15,16,17,18,19 ? * 2,3,4,5,6 *)"
    assert view["next_fire_times"][0] == "2026-11-23T06:00:00Z"  # 07:00 Berlin


# --- priority (S1-01) ---------------------------------------------------------------------------


def test_same_instant_occurrences_fire_higher_priority_first(local: Local) -> None:
    """S1-01 priority: three tasks due in the same second are handed to delivery in priority
    order, higher first."""
    schedule = {"kind": "cron", "expression": "1 5 * * *"}
    local.task("/p1", schedule=schedule, priority=1)
    local.task("/p9", schedule=schedule, priority=9)
    local.task("/p0", schedule=schedule)
    local.tick(minutes=1)
    assert [path for path, _ in local.target.calls] == ["/p9", "/p1", "/p0"]


# --- overlap on AWS: the recorder holds the schedule (moto) -------------------------------------

GROUP = "timebridge-test"


@pytest.fixture
def moto_backend(aws_env: None) -> Iterator[SchedulerBackend]:
    from moto import mock_aws

    from service.adapters.scheduler.eventbridge import (
        EventBridgeSchedulerBackend,
        make_scheduler_client,
    )

    with mock_aws():
        client = make_scheduler_client()
        client.create_schedule_group(Name=GROUP)
        yield EventBridgeSchedulerBackend(
            group=GROUP,
            target_arn="arn:aws:lambda:us-east-1:123456789012:function:proxy",
            role_arn="arn:aws:iam::123456789012:role/scheduler",
            client=client,
        )


def _aws(
    db_sessions: sessionmaker[Session], backend: SchedulerBackend, clock: FrozenClock, **fields: Any
) -> tuple[TaskService, Recorder, str, str]:
    service = TaskService(db_sessions, backend, clock=clock)
    recorder = Recorder(db_sessions, backend, clock=clock, hold_schedules=True)
    tenant = add_tenant(db_sessions)
    view, _ = service.create(
        tenant,
        {
            "name": "long-job",
            "schedule": {"kind": "cron", "expression": "*/5 * * * *"},
            "target": {"url": "https://jobs.example.com/run"},
            "callback": {"enabled": True, "timeout_seconds": 3600},
            **fields,
        },
    )
    return service, recorder, tenant, str(view["id"])


def _delivered(recorder: Recorder, task_id: str, scheduled: datetime) -> None:
    """The proxy's outcome record for a call the target accepted (202: callback to come)."""
    record = {
        "occurrence_key": occurrence_key(task_id, scheduled, 1),
        "status": "success",
        "status_code": 202,
        "started_at": format_scheduled_time(scheduled),
    }
    recorder.record_outcome(outcome_from_record(record))


def test_on_eventbridge_a_running_execution_disables_the_schedule_until_it_ends(
    db_sessions: sessionmaker[Session], moto_backend: SchedulerBackend
) -> None:
    """S1-14 / S1-04 on AWS: the proxy cannot read the database, so the recorder, on recording
    a delivery that leaves the execution awaiting its callback, sets the schedule DISABLED
    (overlap skip: a limit of one) and ENABLED again when the callback ends it. The task's
    status stays `scheduled` throughout."""
    clock = FrozenClock()
    service, recorder, tenant, task_id = _aws(db_sessions, moto_backend, clock, overlap="skip")
    name = service.get(tenant, task_id)["schedule_name"]
    first = at(5, 5)
    clock.now = first
    _delivered(recorder, task_id, first)
    info = moto_backend.get(name)
    assert info is not None and info.definition.enabled is False
    assert service.get(tenant, task_id)["status"] == "scheduled"
    recorder.report_callback(occurrence_key(task_id, first, 1), "success")
    info = moto_backend.get(name)
    assert info is not None and info.definition.enabled is True
    with db_sessions() as session:
        task = session.get(Task, task_id)
        assert task is not None and task.held_since is None


def test_on_eventbridge_a_callback_timeout_releases_the_held_schedule(
    db_sessions: sessionmaker[Session], moto_backend: SchedulerBackend
) -> None:
    """S1-04 on AWS: the sweeper's deadline ends the execution, and the schedule comes back."""
    clock = FrozenClock()
    service, recorder, tenant, task_id = _aws(db_sessions, moto_backend, clock, max_concurrency=1)
    name = service.get(tenant, task_id)["schedule_name"]
    clock.now = at(5, 5)
    _delivered(recorder, task_id, at(5, 5))
    assert moto_backend.get(name).definition.enabled is False  # type: ignore[union-attr]
    clock.advance(hours=2)
    assert recorder.sweep()["timed_out"] == 1
    assert moto_backend.get(name).definition.enabled is True  # type: ignore[union-attr]


def test_on_eventbridge_buffer_one_runs_the_latest_held_back_occurrence_on_release(
    db_sessions: sessionmaker[Session], moto_backend: SchedulerBackend
) -> None:
    """S1-04 buffer_one on AWS: while the schedule was disabled, 05:10 and 05:15 did not fire;
    when the running execution ends, the latest of them runs once, as a one-time schedule."""
    clock = FrozenClock()
    _service, recorder, _tenant, task_id = _aws(
        db_sessions, moto_backend, clock, overlap="buffer_one"
    )
    clock.now = at(5, 5)
    _delivered(recorder, task_id, at(5, 5))
    clock.now = at(5, 17)
    recorder.report_callback(occurrence_key(task_id, at(5, 5), 1), "success")
    buffered = moto_backend.get(retry_schedule_name(task_id, at(5, 15), 1))
    assert buffered is not None
    assert '"scheduled_time":"2026-11-23T05:15:00Z"' in buffered.definition.input
    assert moto_backend.get(retry_schedule_name(task_id, at(5, 10), 1)) is None


def test_on_eventbridge_allow_never_holds_the_schedule(
    db_sessions: sessionmaker[Session], moto_backend: SchedulerBackend
) -> None:
    clock = FrozenClock()
    service, recorder, tenant, task_id = _aws(db_sessions, moto_backend, clock)
    clock.now = at(5, 5)
    _delivered(recorder, task_id, at(5, 5))
    name = service.get(tenant, task_id)["schedule_name"]
    assert moto_backend.get(name).definition.enabled is True  # type: ignore[union-attr]


# --- wiring and the running engine ----------------------------------------------------------


def test_the_container_wires_the_gate_locally_and_the_hold_on_aws(
    db_sessions: sessionmaker[Session],
) -> None:
    """S1-04: the local engine gates at fire time (with the tenant cap setting); on AWS the
    recorder holds schedules instead."""
    from service.container import assemble
    from service.settings import Settings

    local = assemble(
        Settings(tenant_max_running=2), db_sessions, LocalSchedulerBackend(db_sessions)
    )
    try:
        assert local.local_engine.gate.tenant_cap == 2
        assert local.recorder.hold_schedules is False
    finally:
        local.close()
    aws = assemble(
        Settings(
            backend="eventbridge",
            proxy_lambda_arn="arn:aws:lambda:us-east-1:123456789012:function:proxy",
            scheduler_role_arn="arn:aws:iam::123456789012:role/scheduler",
        ),
        db_sessions,
        LocalSchedulerBackend(db_sessions),
    )
    assert aws.local_engine is None and aws.recorder.hold_schedules is True


def _wait_for(check: Any, seconds: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the engine did not get there in time"
        time.sleep(0.05)


def test_the_running_engine_skips_a_locked_occurrence_and_frees_the_slot_when_recorded(
    local: Local,
) -> None:
    """S1-14 TASK_LOCKED with the engine on its threads (outcomes recorded in batches): a call
    under way counts as running until its outcome is recorded, then no longer."""
    task = local.task(overlap="skip")
    quick = local.task("/quick", overlap="skip")
    local.clock.advance(minutes=1)
    local.engine.start()
    try:
        _wait_for(lambda: len(local.executions(task)) == 1 and len(local.executions(quick)) == 1)
        local.clock.advance(minutes=1)
        local.engine.wake()
        _wait_for(lambda: len(local.executions(task)) == 2 and len(local.executions(quick)) == 2)
    finally:
        local.engine.stop()
    assert [e.status for e in local.executions(task)] == ["pending", "skipped"]
    assert [e.status for e in local.executions(quick)] == ["success", "success"]
    assert local.gate.under_way == 0  # nothing left counted as under way


def test_on_eventbridge_the_tenant_cap_holds_every_schedule_of_the_tenant(
    db_sessions: sessionmaker[Session], moto_backend: SchedulerBackend
) -> None:
    """S1-04 / S1-12 tenant cap on AWS: with a cap of one running execution, a delivery that
    leaves one task awaiting its callback disables every recurring schedule of that tenant (not
    another tenant's), and its callback enables them again."""
    clock = FrozenClock()
    service = TaskService(db_sessions, moto_backend, clock=clock)
    recorder = Recorder(db_sessions, moto_backend, clock=clock, hold_schedules=True, tenant_cap=1)
    ours, theirs = add_tenant(db_sessions), add_tenant(db_sessions, "team-b")

    def make(tenant: str, name: str) -> tuple[str, str]:
        view, _ = service.create(
            tenant,
            {
                "name": name,
                "schedule": {"kind": "cron", "expression": "*/5 * * * *"},
                "target": {"url": "https://jobs.example.com/run"},
                "callback": {"enabled": True},
            },
        )
        return str(view["id"]), str(view["schedule_name"])

    (first, first_name), (_, second_name) = make(ours, "a"), make(ours, "b")
    _, other_name = make(theirs, "c")

    def enabled(name: str) -> bool:
        info = moto_backend.get(name)
        assert info is not None
        return info.definition.enabled

    clock.now = at(5, 5)
    _delivered(recorder, first, at(5, 5))
    assert (enabled(first_name), enabled(second_name), enabled(other_name)) == (
        False,
        False,
        True,
    )
    recorder.report_callback(occurrence_key(first, at(5, 5), 1), "success")
    assert (enabled(first_name), enabled(second_name), enabled(other_name)) == (True, True, True)
