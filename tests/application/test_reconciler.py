"""The reconciler repairs every drift between rows and schedules, and crash injection shows that
after one reconcile nothing is lost and nothing is orphaned."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Task
from service.application.reconcile import Reconciler
from service.application.tasks import TaskService, definition_for
from service.domain.errors import Conflict, TimebridgeError
from service.domain.provisioning import ScheduleDefinition
from tests.application.fakes import Crash, FaultyBackend, FrozenClock


def body(name: str = "job", **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "schedule": {"kind": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
        "target": {"url": "https://svc.internal/hook"},
        **changes,
    }


def test_orphan_schedule_with_no_row_is_deleted(
    reconciler: Reconciler, backend: FaultyBackend
) -> None:
    orphan = ScheduleDefinition(
        name="tb-" + "a" * 32, expression="rate(5 minutes)", expression_timezone="UTC", input="{}"
    )
    backend.create(orphan, client_token="x")
    report = reconciler.run()
    assert report.orphans_deleted == 1
    assert list(backend.list()) == []


def test_cancel_that_crashed_before_its_commit_gets_its_schedule_back(
    service: TaskService, reconciler: Reconciler, backend: FaultyBackend, tenant: str
) -> None:
    task, _ = service.create(tenant, body())
    backend.fault = "crash"  # the delete happens, the commit never does...
    with pytest.raises(Crash):
        service.cancel(tenant, task["id"])
    assert service.get(tenant, task["id"])["status"] == "scheduled"
    report = reconciler.run()  # ...so the live row gets its schedule back
    assert report.created == 1
    assert backend.get(task["schedule_name"]) is not None


def test_schedule_of_a_cancelled_task_is_deleted(
    service: TaskService, reconciler: Reconciler, backend: FaultyBackend, tenant: str
) -> None:
    task, _ = service.create(tenant, body())
    info = backend.get(task["schedule_name"])
    assert info is not None
    service.cancel(tenant, task["id"])
    backend.inner.create(info.definition, client_token="left-over")  # e.g. a lost delete
    report = reconciler.run()
    assert report.deleted_for_terminal_tasks == 1
    assert list(backend.list()) == []


def test_state_and_expression_drift_is_repaired_toward_the_row(
    service: TaskService, reconciler: Reconciler, backend: FaultyBackend, tenant: str
) -> None:
    task, _ = service.create(tenant, body())
    info = backend.get(task["schedule_name"])
    assert info is not None
    backend.inner.update(
        ScheduleDefinition(
            **{**info.definition.__dict__, "enabled": False, "expression": "rate(1 day)"}
        )
    )
    report = reconciler.run()
    assert report.updated == 1
    repaired = backend.get(task["schedule_name"])
    assert repaired is not None and repaired.definition == info.definition


def test_fresh_provisioning_row_is_left_to_its_request(
    service: TaskService,
    reconciler: Reconciler,
    backend: FaultyBackend,
    clock: FrozenClock,
    tenant: str,
) -> None:
    backend.fault = "crash"  # schedule created, row never marked scheduled
    with pytest.raises(Crash):
        service.create(tenant, body())
    report = reconciler.run()
    assert report.adopted == 0
    clock.advance(minutes=5)
    report = reconciler.run()
    assert report.adopted == 1
    assert [t["status"] for t in service.list(tenant).items] == ["scheduled"]


def test_provisioning_row_without_a_schedule_gets_one(
    service: TaskService,
    reconciler: Reconciler,
    backend: FaultyBackend,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
    tenant: str,
) -> None:
    task, _ = service.create(tenant, body())
    backend.inner.delete(task["schedule_name"])
    with db_sessions() as session:
        row = session.get(Task, task["id"])
        assert row is not None
        row.status = "provisioning"
        session.commit()
    clock.advance(minutes=5)
    report = reconciler.run()
    assert report.created == 1
    assert service.get(tenant, task["id"])["status"] == "scheduled"


def test_one_time_schedule_gone_after_its_fire_is_reported_not_recreated(
    service: TaskService,
    reconciler: Reconciler,
    backend: FaultyBackend,
    clock: FrozenClock,
    tenant: str,
) -> None:
    task, _ = service.create(tenant, body(schedule={"kind": "delay", "seconds": 60}))
    backend.inner.delete(task["schedule_name"])  # what ActionAfterCompletion=DELETE does
    clock.advance(minutes=10)
    report = reconciler.run()
    assert report.vanished_after_fire == 1
    assert report.created == 0


class CommitBomb:
    """Makes the next commit of the service fail after the backend call succeeded."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.armed = False
        event.listen(sessions, "before_commit", self._before_commit)

    def _before_commit(self, session: Session) -> None:
        if self.armed:
            self.armed = False
            raise RuntimeError("injected commit failure")


def test_crash_injection_loses_nothing_and_orphans_nothing(
    service: TaskService,
    reconciler: Reconciler,
    backend: FaultyBackend,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
    tenant: str,
) -> None:
    rng = random.Random(20261123)
    bomb = CommitBomb(db_sessions)
    original_around = backend._around

    def around(action: Any) -> object:
        commit_fails = backend.fault == "commit_fails"
        if commit_fails:
            backend.fault = None
        result = original_around(action)
        if commit_fails:
            bomb.armed = True
        return result

    backend._around = around  # type: ignore[method-assign]
    acknowledged: dict[str, str] = {}
    tally: Counter[str] = Counter()
    schedules = [
        {"kind": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
        {"kind": "cron", "expression": "0 9 1 * 1"},
        {"kind": "rate", "expression": "rate(15 minutes)"},
        {"kind": "delay", "seconds": 3600},
    ]
    runs = 500
    for run in range(runs):
        op = rng.choice(["create", "create", "update", "pause", "resume", "cancel"])
        fault = rng.choice([None, "raise", "crash", "commit_fails", "first_commit_fails"])
        ids = list(acknowledged)
        if op != "create" and not ids:
            op = "create"
        # first_commit_fails: the operation's first commit fails (for a create, the row's own
        # commit, before any AWS call); commit_fails: the commit after the backend call fails.
        bomb.armed = fault == "first_commit_fails"
        backend.fault = None if fault == "first_commit_fails" else fault
        tally[f"{op}:{fault}"] += 1
        try:
            if op == "create":
                task, _ = service.create(tenant, body(f"job-{run}", schedule=rng.choice(schedules)))
                acknowledged[task["id"]] = task["status"]
            else:
                task_id = rng.choice(ids)
                if op == "update":
                    task = service.update(tenant, task_id, {"schedule": rng.choice(schedules)})
                else:
                    task = getattr(service, op)(tenant, task_id)
                acknowledged[task_id] = task["status"]
        except Crash:
            tally["crashed"] += 1
        except Conflict:
            tally["conflict"] += 1
        except (TimebridgeError, RuntimeError):
            tally["failed"] += 1
        bomb.armed = False
        backend.fault = None
        clock.advance(seconds=rng.randint(0, 5))
    clock.advance(minutes=5)
    report = reconciler.run()
    assert report.errors == []

    lost = orphaned = mismatched = 0
    with db_sessions() as session:
        rows = {t.id: t for t in session.scalars(select(Task))}
    names = {s.name for s in backend.list()}
    for task_id, status in acknowledged.items():
        row = rows.get(task_id)
        if row is None or row.status != status:
            lost += 1
    for row in rows.values():
        info = backend.get(row.schedule_name)
        if row.status == "provisioning":
            mismatched += 1
        elif row.status in ("scheduled", "paused"):
            if info is None or info.definition != definition_for(row):
                lost += 1
        elif info is not None:
            orphaned += 1
    orphaned += len(names - {r.schedule_name for r in rows.values()})
    print(
        f"\ncrash injection: runs={runs} tasks={len(rows)} acknowledged={len(acknowledged)} "
        f"crashed={tally['crashed']} failed={tally['failed']} repairs={report.repairs} "
        f"lost={lost} orphaned={orphaned} unfinished={mismatched}"
    )
    assert runs >= 500
    assert tally["crashed"] > 50 and tally["failed"] > 50
    assert (lost, orphaned, mismatched) == (0, 0, 0)
