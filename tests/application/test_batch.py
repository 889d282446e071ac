"""Batch create: per-item results, nothing stored for bad items, throttling absorbed, re-runs
made safe by idempotency keys."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Task
from service.adapters.scheduler.eventbridge import EventBridgeSchedulerBackend
from service.application.batch import create_many
from service.application.pacing import AdaptiveLimiter
from service.application.tasks import TaskService
from service.domain.errors import InvalidRequest
from tests.application.fakes import FrozenClock, add_tenant
from tests.support.scheduler_emulator import SchedulerEmulator


def body(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "name": f"job-{i}",
        "schedule": {"kind": "rate", "expression": "rate(1 hour)"},
        "target": {"url": f"https://svc.internal/hook/{i}"},
        **changes,
    }


def make_service(sessions: sessionmaker[Session], emulator: SchedulerEmulator) -> TaskService:
    backend = EventBridgeSchedulerBackend(
        group="g",
        target_arn="arn:aws:lambda:::function:p",
        role_arn="arn:aws:iam:::role/r",
        client=emulator,
    )
    return TaskService(sessions, backend, clock=FrozenClock())


def count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Task)) or 0)


def test_batch_reports_each_item_and_stores_only_the_valid_ones(
    db_sessions: sessionmaker[Session],
) -> None:
    emulator = SchedulerEmulator(latency=0)
    service = make_service(db_sessions, emulator)
    tenant = add_tenant(db_sessions)
    results = create_many(
        service,
        tenant,
        [body(0), body(1, schedule={"kind": "cron", "expression": "0 9 ? * 0"}), body(2), {"x": 1}],
    )
    assert [r["status"] for r in results] == [201, 422, 201, 422]
    assert results[1]["error"]["code"] == "INVALID_SCHEDULE"
    assert results[1]["error"]["field"] == "schedule.expression"
    assert results[3]["error"]["code"] == "VALIDATION_ERROR"
    assert [r["task"]["status"] for r in results if "task" in r] == ["scheduled", "scheduled"]
    assert count(db_sessions) == 2
    assert emulator.creates == 2


def test_throttling_is_absorbed_and_never_reaches_the_caller(
    db_sessions: sessionmaker[Session],
) -> None:
    emulator = SchedulerEmulator(rate=300, burst=5, latency=0.01)
    service = make_service(db_sessions, emulator)
    tenant = add_tenant(db_sessions)
    limiter = AdaptiveLimiter(initial_rate=100)
    results = create_many(service, tenant, [body(i) for i in range(300)], limiter=limiter)
    assert {r["status"] for r in results} == {201}
    assert emulator.throttled > 0 and limiter.throttles > 0
    assert emulator.creates == 300
    assert count(db_sessions) == 300


def test_rerunning_a_batch_with_idempotency_keys_creates_nothing_twice(
    db_sessions: sessionmaker[Session],
) -> None:
    emulator = SchedulerEmulator(latency=0)
    service = make_service(db_sessions, emulator)
    tenant = add_tenant(db_sessions)
    items = [{**body(i), "idempotency_key": f"row-{i}"} for i in range(20)]
    first = create_many(service, tenant, items)
    second = create_many(service, tenant, items)
    assert {r["status"] for r in first} == {201}
    assert {r["status"] for r in second} == {200}
    assert [r["task"]["id"] for r in first] == [r["task"]["id"] for r in second]
    assert emulator.creates == 20 and count(db_sessions) == 20
    changed = create_many(service, tenant, [{**body(99), "idempotency_key": "row-0"}])
    assert changed[0]["status"] == 409


def test_batch_size_is_bounded(db_sessions: sessionmaker[Session]) -> None:
    service = make_service(db_sessions, SchedulerEmulator(latency=0))
    tenant = add_tenant(db_sessions)
    with pytest.raises(InvalidRequest):
        create_many(service, tenant, [])
    with pytest.raises(InvalidRequest):
        create_many(service, tenant, [body(i) for i in range(1001)])


class HeldEmulator(SchedulerEmulator):
    """Holds back the schedule whose target URL ends with `held` until `go` is set."""

    def __init__(self, held: str) -> None:
        super().__init__(latency=0)
        self.held = held
        self.go = threading.Event()

    def create_schedule(self, **request: Any) -> dict[str, Any]:
        if request["Target"]["Input"].find(self.held) >= 0 and not self.go.wait(30):
            raise AssertionError("the held schedule was never let go")
        return super().create_schedule(**request)


def test_chunks_are_marked_scheduled_while_later_chunks_still_provision(
    db_sessions: sessionmaker[Session],
) -> None:
    # Issue 4: a request's rows are finished chunk by chunk, so it ends one chunk's work after
    # its last schedule, and the next request's schedules follow with little pause.
    emulator = HeldEmulator('hook/299"')
    service = make_service(db_sessions, emulator)
    tenant = add_tenant(db_sessions)
    results: list[dict[str, Any]] = []
    worker = threading.Thread(
        target=lambda: results.extend(create_many(service, tenant, [body(i) for i in range(300)]))
    )
    worker.start()

    def scheduled() -> int:
        with db_sessions() as session:
            query = select(func.count()).select_from(Task).where(Task.status == "scheduled")
            return int(session.scalar(query) or 0)

    deadline = time.monotonic() + 30
    while scheduled() < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    held_back = scheduled()
    emulator.go.set()
    worker.join(30)
    # Every chunk before the held one (the last, items 220-299) was finished meanwhile.
    assert held_back >= 200
    assert {r["status"] for r in results} == {201}
    assert scheduled() == 300 and emulator.creates == 300
