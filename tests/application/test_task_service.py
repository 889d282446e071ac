"""TaskService on SQLite and PostgreSQL with the local backend: two-phase create, idempotency,
updates, pause/resume, cancel, listing, isolation, and no half-done work on backend failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import AuditEvent, IdempotencyRecord, LocalSchedule, Task
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.tasks import TaskService
from service.domain.errors import Conflict, InvalidRequest, InvalidSchedule, NotFound
from service.domain.provisioning import ScheduleDefinition
from tests.application.fakes import FaultyBackend, FrozenClock, add_tenant


def body(**changes: Any) -> dict[str, Any]:
    return {
        "name": "nightly-report",
        "schedule": {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"},
        "target": {
            "url": "https://reports.internal/run",
            "method": "post",
            "headers": {"Authorization": "Bearer s3cret", "X-Trace": "on"},
            "body": {"full": True},
        },
        **changes,
    }


def count_tasks(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Task)) or 0)


def test_create_provisions_one_schedule_and_returns_it_scheduled(
    service: TaskService, backend: FaultyBackend, tenant: str
) -> None:
    task, created = service.create(tenant, body())
    assert created
    assert task["status"] == "scheduled"
    assert task["mode"] == "native"
    assert task["aws_expression"] == "cron(0 9 ? * MON-FRI *)"
    assert task["schedule_arn"].endswith("/" + task["schedule_name"])
    assert task["next_fire_times"][:2] == ["2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z"]
    assert task["target"]["headers"] == {"Authorization": "***", "X-Trace": "on"}
    info = backend.get(task["schedule_name"])
    assert info is not None
    assert info.definition.expression_timezone == "Asia/Seoul"
    document = json.loads(info.definition.input)
    assert document["task_id"] == task["id"]
    assert document["attempt"] == 1
    assert document["target"]["headers"]["Authorization"] == "Bearer s3cret"
    assert document["context"]["scheduled_time"] == "<aws.scheduler.scheduled-time>"
    assert document["context"]["schedule_arn"] == "<aws.scheduler.schedule-arn>"


def test_one_time_task_deletes_its_schedule_after_completion(
    service: TaskService, backend: FaultyBackend, tenant: str
) -> None:
    task, _ = service.create(tenant, body(schedule={"kind": "delay", "seconds": 600}))
    info = backend.get(task["schedule_name"])
    assert info is not None
    assert info.definition.expression == "at(2026-11-23T05:10:00)"
    assert info.definition.delete_after_completion


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        (
            {"schedule": {"kind": "cron", "expression": "cron(0 9 ? * 0 *)"}},
            InvalidSchedule,
            "schedule.expression",
        ),
        ({"schedule": {"kind": "once", "at": "2020-01-01T00:00:00Z"}}, InvalidSchedule, "schedule"),
        ({"target": {"url": "ftp://x"}}, InvalidRequest, "target.url"),
        ({"target": {"url": "http://169.254.169.254/latest"}}, InvalidRequest, "target.url"),
        ({"target": {"url": "https://x", "body": "y" * 300_000}}, InvalidRequest, "target"),
        ({"name": ""}, InvalidRequest, "name"),
        ({"colour": "red"}, InvalidRequest, "colour"),
        ({"retry": {"max_attempts": 0}}, InvalidRequest, "retry.max_attempts"),
    ],
)
def test_bad_input_stores_nothing_and_calls_no_backend(
    service: TaskService,
    backend: FaultyBackend,
    db_sessions: sessionmaker[Session],
    tenant: str,
    changes: dict[str, Any],
    error: type[Exception],
    field: str,
) -> None:
    with pytest.raises(error) as caught:
        service.create(tenant, body(**changes))
    assert getattr(caught.value, "field", None) == field
    assert count_tasks(db_sessions) == 0
    assert backend.calls == 0


def test_backend_failure_on_create_leaves_no_task(
    service: TaskService, backend: FaultyBackend, db_sessions: sessionmaker[Session], tenant: str
) -> None:
    backend.fault = "raise"
    with pytest.raises(Exception, match="injected"):
        service.create(tenant, body(), idempotency_key="k1")
    assert count_tasks(db_sessions) == 0
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0
    assert list(backend.list()) == []
    task, created = service.create(tenant, body(), idempotency_key="k1")
    assert created and task["status"] == "scheduled"


def test_same_idempotency_key_and_body_return_the_same_task(
    service: TaskService, backend: FaultyBackend, tenant: str
) -> None:
    first, created = service.create(tenant, body(), idempotency_key="abc")
    again, created_again = service.create(tenant, body(), idempotency_key="abc")
    assert created and not created_again
    assert again["id"] == first["id"]
    assert len(list(backend.list())) == 1


def test_same_idempotency_key_with_another_body_conflicts(
    service: TaskService, tenant: str
) -> None:
    service.create(tenant, body(), idempotency_key="abc")
    with pytest.raises(Conflict):
        service.create(tenant, body(name="other"), idempotency_key="abc")


def test_update_replaces_the_schedule_and_bumps_the_version(
    service: TaskService, backend: FaultyBackend, tenant: str
) -> None:
    task, _ = service.create(tenant, body())
    updated = service.update(
        tenant, task["id"], {"schedule": {"kind": "rate", "expression": "rate(10 minutes)"}}
    )
    assert updated["aws_expression"] == "rate(10 minutes)"
    assert updated["version"] == 2
    info = backend.get(task["schedule_name"])
    assert info is not None and info.definition.expression == "rate(10 minutes)"


def test_update_that_the_backend_refuses_changes_nothing(
    service: TaskService, backend: FaultyBackend, tenant: str
) -> None:
    task, _ = service.create(tenant, body())
    backend.fault = "raise"
    with pytest.raises(Exception, match="injected"):
        service.update(
            tenant, task["id"], {"name": "renamed", "schedule": {"kind": "daily", "time": "10:00"}}
        )
    again = service.get(tenant, task["id"])
    assert again["name"] == "nightly-report"
    assert again["version"] == 1
    info = backend.get(task["schedule_name"])
    assert info is not None and info.definition.expression == "cron(0 9 ? * MON-FRI *)"


def test_pause_and_resume_flip_the_schedule_state(
    service: TaskService, backend: FaultyBackend, tenant: str
) -> None:
    task, _ = service.create(tenant, body())
    paused = service.pause(tenant, task["id"])
    assert paused["status"] == "paused"
    assert paused["next_fire_times"] == []
    assert [s.enabled for s in backend.list()] == [False]
    resumed = service.resume(tenant, task["id"])
    assert resumed["status"] == "scheduled"
    assert [s.enabled for s in backend.list()] == [True]


def test_cancel_deletes_the_schedule_and_keeps_the_task(
    service: TaskService, backend: FaultyBackend, tenant: str
) -> None:
    task, _ = service.create(tenant, body())
    cancelled = service.cancel(tenant, task["id"])
    assert cancelled["status"] == "cancelled"
    assert list(backend.list()) == []
    assert service.get(tenant, task["id"])["status"] == "cancelled"
    assert service.cancel(tenant, task["id"])["status"] == "cancelled"  # idempotent
    with pytest.raises(Conflict):
        service.pause(tenant, task["id"])


def test_cancel_of_a_schedule_already_gone_counts_as_done(
    service: TaskService, backend: FaultyBackend, tenant: str
) -> None:
    task, _ = service.create(tenant, body())
    backend.inner.delete(task["schedule_name"])
    assert service.cancel(tenant, task["id"])["status"] == "cancelled"


def test_another_tenants_task_is_not_found(
    service: TaskService, db_sessions: sessionmaker[Session], tenant: str
) -> None:
    task, _ = service.create(tenant, body())
    other = add_tenant(db_sessions, "team-b")
    for action in (service.get, service.pause, service.resume, service.cancel):
        with pytest.raises(NotFound):
            action(other, task["id"])
    with pytest.raises(NotFound):
        service.get(tenant, "not-a-uuid")
    assert service.list(other).items == []


def test_list_filters_and_pages_newest_first(
    service: TaskService, clock: FrozenClock, tenant: str
) -> None:
    ids = []
    for i in range(5):
        clock.advance(seconds=1)
        task, _ = service.create(tenant, body(name=f"job-{i}"))
        ids.append(task["id"])
    service.pause(tenant, ids[0])
    first = service.list(tenant, limit=2)
    assert [t["id"] for t in first.items] == [ids[4], ids[3]]
    assert first.next_cursor is not None
    second = service.list(tenant, limit=2, cursor=first.next_cursor)
    assert [t["id"] for t in second.items] == [ids[2], ids[1]]
    third = service.list(tenant, limit=2, cursor=second.next_cursor)
    assert [t["id"] for t in third.items] == [ids[0]] and third.next_cursor is None
    assert [t["id"] for t in service.list(tenant, status="paused").items] == [ids[0]]
    assert [t["id"] for t in service.list(tenant, name="job-3").items] == [ids[3]]
    with pytest.raises(InvalidRequest):
        service.list(tenant, cursor="garbage")
    with pytest.raises(InvalidRequest):
        service.list(tenant, status="sleeping")


def test_update_whose_input_would_be_too_large_changes_nothing(
    service: TaskService, backend: FaultyBackend, tenant: str
) -> None:
    task, _ = service.create(tenant, body())
    calls = backend.calls
    with pytest.raises(InvalidRequest) as caught:
        service.update(
            tenant, task["id"], {"target": {"url": "https://x.internal", "body": "y" * 300_000}}
        )
    assert caught.value.field == "target"
    assert backend.calls == calls
    assert service.get(tenant, task["id"])["version"] == 1


class _FailsAfterMarking(LocalSchedulerBackend):
    """The local backend whose transaction fails after the row was marked provisioned."""

    def create(
        self,
        definition: ScheduleDefinition,
        *,
        client_token: str,
        also: Callable[[Connection, str], None] | None = None,
    ) -> str:
        def mark_then_fail(connection: Connection, arn: str) -> None:
            assert also is not None
            also(connection, arn)
            raise RuntimeError("the commit never happens")

        return super().create(definition, client_token=client_token, also=mark_then_fail)


def test_with_the_local_backend_schedule_and_status_commit_together(
    db_sessions: sessionmaker[Session],
) -> None:
    """SEEDS 004 two-phase provisioning, `local` backend: the schedule and the row's move to
    `scheduled` are one transaction (one commit fewer per create). When it fails, neither
    stays, and the row made in the first phase is removed: no task claims a schedule."""
    tenant = add_tenant(db_sessions)
    working = TaskService(db_sessions, LocalSchedulerBackend(db_sessions))
    task, _ = working.create(tenant, body(name="kept"))
    with db_sessions() as session:
        row = session.get(Task, task["id"])
        assert row is not None and row.status == "scheduled" and row.schedule_arn
        assert session.get(LocalSchedule, row.schedule_name) is not None
    failing = TaskService(db_sessions, _FailsAfterMarking(db_sessions))
    with pytest.raises(RuntimeError):
        failing.create(tenant, body(name="lost"))
    with db_sessions() as session:
        assert [t.name for t in session.scalars(select(Task))] == ["kept"]
        assert session.scalar(select(func.count()).select_from(LocalSchedule)) == 1


def test_with_the_local_backend_a_create_is_one_transaction(
    db_sessions: sessionmaker[Session],
) -> None:
    """The row, its schedule and its audit event are written and committed together: one
    commit per create, the row already `scheduled` with its ARN."""
    tenant = add_tenant(db_sessions)
    service = TaskService(db_sessions, LocalSchedulerBackend(db_sessions, clock=FrozenClock()))
    engine = db_sessions.kw["bind"]
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    event.listen(engine, "commit", count)
    try:
        task, created = service.create(tenant, body(), actor="key:test")
    finally:
        event.remove(engine, "commit", count)
    assert created and task["status"] == "scheduled"
    assert len(commits) == 1
    with db_sessions() as session:
        row = session.get(Task, task["id"])
        assert row is not None and row.schedule_arn == task["schedule_arn"]
        assert session.get(LocalSchedule, row.schedule_name) is not None
        audit = select(func.count()).select_from(AuditEvent)
        assert session.scalar(audit.where(AuditEvent.target_id == row.id)) == 1


class _KeyTakenMeanwhile(LocalSchedulerBackend):
    """The local backend; before its next create, another request stores the same
    Idempotency-Key with its own task (as if it committed just after our replay check)."""

    earlier: dict[str, Any] | None = None
    key = "same-key"
    tenant = ""

    def create(
        self,
        definition: ScheduleDefinition,
        *,
        client_token: str,
        also: Callable[[Connection, str], None] | None = None,
    ) -> str:
        if self.earlier is None:
            other = TaskService(self._sessions, LocalSchedulerBackend(self._sessions))
            self.earlier, _ = other.create(self.tenant, body(), idempotency_key=self.key)
        return super().create(definition, client_token=client_token, also=also)


def test_a_key_stored_meanwhile_by_another_request_replays_its_task(
    db_sessions: sessionmaker[Session],
) -> None:
    """Same key, same body, the other request first by a hair: this one answers with the
    other's task (not created), and leaves neither a second row nor a second schedule."""
    backend = _KeyTakenMeanwhile(db_sessions)
    backend.tenant = add_tenant(db_sessions)
    service = TaskService(db_sessions, backend)
    task, created = service.create(backend.tenant, body(), idempotency_key=backend.key)
    assert backend.earlier is not None
    assert not created and task["id"] == backend.earlier["id"]
    assert count_tasks(db_sessions) == 1
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(LocalSchedule)) == 1
        assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 1


def test_a_schedule_that_never_fires_is_refused_with_every_warning(
    service: TaskService, tenant: str
) -> None:
    """The reason names what the schedule does, also the daylight-saving notes the service
    otherwise leaves out of its compiled schedules."""
    schedule = {
        "kind": "cron",
        "expression": "cron(30 2 * * ? *)",
        "timezone": "Europe/Berlin",
        "end_at": "2026-11-22T00:00:00",
    }
    with pytest.raises(InvalidSchedule) as caught:
        service.create(tenant, body(schedule=schedule))
    assert caught.value.field == "schedule"
    assert "never fires after now" in str(caught.value)
    assert "does not exist in Europe/Berlin" in str(caught.value)
    assert count_tasks(service.sessions) == 0
