"""The embedded local engine with a controllable clock (issue "Embedded local engine"): it fires
what the domain evaluator says, when it says, with EventBridge's semantics (time zones and DST,
start/end, State, flexible windows, ActionAfterCompletion=DELETE), catches up after downtime
within the grace window, redelivers after a crash with the same occurrence, and never fires an
occurrence twice across engines. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Alert, LocalFiring, LocalSchedule, Task
from service.adapters.scheduler.engine import EngineLocked, LocalEngine
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.recorder import Recorder, outcome_from_record
from service.application.tasks import TaskService
from service.domain.executions import occurrence_key
from service.domain.provisioning import ScheduleDefinition
from service.domain.schedules import next_fire_times
from tests.application.fakes import FaultyBackend, FrozenClock


class Collector:
    """Delivers nothing: keeps each event, and can answer with an outcome for the recorder."""

    def __init__(self, recorder: Recorder | None = None, status: str = "success") -> None:
        self.events: list[dict[str, Any]] = []
        self.recorder = recorder
        self.status = status
        self.fail_next = 0
        self._lock = threading.Lock()

    def deliver(self, event: dict[str, Any]) -> None:
        with self._lock:
            if self.fail_next:
                self.fail_next -= 1
                raise RuntimeError("the process died mid-delivery")
            self.events.append(event)
        if self.recorder is not None and "task_id" in event:
            scheduled = event["context"]["scheduled_time"]
            record = {
                "occurrence_key": f"{event['task_id']}:{scheduled}:{event['attempt']}",
                "status": self.status,
                "status_code": 200 if self.status == "success" else 500,
                "started_at": scheduled,
            }
            self.recorder.record_outcome(outcome_from_record(record))

    @property
    def times(self) -> list[str]:
        return [e["context"]["scheduled_time"] for e in self.events]


def definition(name: str, expression: str, zone: str = "UTC", **changes: Any) -> ScheduleDefinition:
    base = ScheduleDefinition(
        name=name,
        expression=expression,
        expression_timezone=zone,
        input=json.dumps(
            {
                "name": name,
                "context": {
                    "schedule_arn": "<aws.scheduler.schedule-arn>",
                    "scheduled_time": "<aws.scheduler.scheduled-time>",
                    "execution_id": "<aws.scheduler.execution-id>",
                    "attempt_number": "<aws.scheduler.attempt-number>",
                },
            }
        ),
    )
    return ScheduleDefinition(**{**base.__dict__, **changes})


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def engine(
    db_sessions: sessionmaker[Session], clock: FrozenClock, collector: Collector
) -> LocalEngine:
    return LocalEngine(db_sessions, collector, clock=clock, rng=random.Random(3))


@pytest.fixture
def local(db_sessions: sessionmaker[Session], clock: FrozenClock) -> LocalSchedulerBackend:
    return LocalSchedulerBackend(db_sessions, clock=clock)


EXPRESSIONS = [
    ("cron(0 9 ? * MON-FRI *)", "Asia/Seoul"),
    ("cron(30 2 * * ? *)", "America/New_York"),  # 02:30 is skipped on the spring-forward day
    ("cron(30 1 * * ? *)", "America/New_York"),  # 01:30 repeats on the fall-back day: once
    ("cron(0/20 * * * ? *)", "Europe/London"),
    ("rate(7 minutes)", "UTC"),
]


@pytest.mark.parametrize(("expression", "zone"), EXPRESSIONS)
def test_fires_exactly_what_the_evaluator_says_across_dst(
    local: LocalSchedulerBackend,
    engine: LocalEngine,
    collector: Collector,
    clock: FrozenClock,
    expression: str,
    zone: str,
) -> None:
    # Over the 2027 US spring-forward (14 March) and, below, the fall-back (7 November).
    for start in (datetime(2027, 3, 12, tzinfo=UTC), datetime(2027, 11, 5, tzinfo=UTC)):
        clock.now = start
        name = f"s-{start:%m}"
        local.create(definition(name, expression, zone), client_token=name)
        expected = next_fire_times(expression, timezone=zone, after=start, count=12)
        if expression.startswith("rate"):
            expected = next_fire_times(expression, after=start, count=12, start=None)
        collector.events.clear()
        for instant in expected:
            clock.now = instant + timedelta(milliseconds=300)
            engine.run_once()
        assert collector.times == [f"{t:%Y-%m-%dT%H:%M:%SZ}" for t in expected]
        local.delete(name)


def test_one_time_schedules_fire_once_and_delete_themselves(
    local: LocalSchedulerBackend,
    engine: LocalEngine,
    collector: Collector,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
) -> None:
    clock.now = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
    # 14:00 in Seoul is 05:00 UTC: due the moment it is made.
    local.create(
        definition("once", "at(2026-11-23T14:00:00)", "Asia/Seoul", delete_after_completion=True),
        client_token="t",
    )
    local.create(definition("keep", "at(2026-11-23T05:00:30)"), client_token="t2")
    engine.run_once()
    assert collector.times == ["2026-11-23T05:00:00Z"]
    assert local.get("once") is None  # ActionAfterCompletion=DELETE
    clock.advance(seconds=29)
    engine.run_once()
    assert len(collector.events) == 1
    clock.advance(seconds=2)
    engine.run_once()
    clock.advance(days=1)
    engine.run_once()
    assert collector.times == ["2026-11-23T05:00:00Z", "2026-11-23T05:00:30Z"]
    assert local.get("keep") is not None  # no DELETE: it stays, and never fires again
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(LocalFiring)) == 0


def test_disabled_schedules_and_bounds_are_honoured(
    local: LocalSchedulerBackend, engine: LocalEngine, collector: Collector, clock: FrozenClock
) -> None:
    clock.now = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    local.create(definition("off", "rate(1 minute)", enabled=False), client_token="a")
    local.create(
        definition(
            "bounded",
            "rate(1 minute)",
            start=datetime(2026, 11, 23, 0, 3, tzinfo=UTC),
            end=datetime(2026, 11, 23, 0, 5, tzinfo=UTC),
        ),
        client_token="b",
    )
    for minute in range(1, 10):
        clock.now = datetime(2026, 11, 23, 0, minute, 0, 100000, tzinfo=UTC)
        engine.run_once()
    assert collector.times == [
        "2026-11-23T00:03:00Z",
        "2026-11-23T00:04:00Z",
        "2026-11-23T00:05:00Z",
    ]
    assert {e["name"] for e in collector.events} == {"bounded"}


def test_the_flexible_window_delays_within_the_window_only(
    local: LocalSchedulerBackend,
    engine: LocalEngine,
    collector: Collector,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
) -> None:
    clock.now = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    local.create(
        definition("flex", "cron(0 1 * * ? *)", flexible_window_minutes=15), client_token="f"
    )
    clock.now = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    engine.claim_due()
    with db_sessions() as session:
        firing = session.scalars(select(LocalFiring)).one()
    window_end = datetime(2026, 11, 23, 1, 15, tzinfo=UTC)
    assert clock.now <= firing.due_at <= window_end
    clock.now = firing.due_at - timedelta(seconds=1)
    engine.run_once()
    assert collector.events == []
    clock.now = firing.due_at
    engine.run_once()
    # The scheduled-time attribute is the schedule's time, not the delayed invocation's.
    assert collector.times == ["2026-11-23T01:00:00Z"]


def test_after_downtime_recent_occurrences_fire_once_and_older_ones_are_missed(
    db_sessions: sessionmaker[Session],
    service: TaskService,
    tenant: str,
    clock: FrozenClock,
    collector: Collector,
) -> None:
    recorder = Recorder(db_sessions, FaultyBackend(LocalSchedulerBackend(db_sessions)), clock=clock)
    engine = LocalEngine(
        db_sessions, collector, clock=clock, missed=recorder, grace=timedelta(minutes=5)
    )
    clock.now = datetime(2026, 11, 23, 0, 0, 30, tzinfo=UTC)
    task, _ = service.create(
        tenant,
        {
            "name": "every-minute",
            "schedule": {"kind": "cron", "expression": "* * * * *"},
            "target": {"url": "https://svc.internal/tick"},
        },
    )
    clock.now = datetime(2026, 11, 23, 0, 10, 30, tzinfo=UTC)  # the engine was down 10 minutes
    engine.run_once()
    engine.run_once()
    assert collector.times == [f"2026-11-23T00:{m:02d}:00Z" for m in range(6, 11)]
    with db_sessions() as session:
        (alert,) = session.scalars(select(Alert)).all()
    assert alert.kind == "missed" and alert.task_id == task["id"]
    assert alert.details == {
        "first": "2026-11-23T00:01:00Z",
        "last": "2026-11-23T00:05:00Z",
        "count": 5,
    }


def test_a_crash_mid_delivery_redelivers_the_same_occurrence(
    local: LocalSchedulerBackend,
    engine: LocalEngine,
    collector: Collector,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
) -> None:
    clock.now = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    local.create(definition("c", "cron(5 0 * * ? *)"), client_token="c")
    clock.now = datetime(2026, 11, 23, 0, 5, tzinfo=UTC)
    collector.fail_next = 1
    engine.run_once()
    assert collector.events == []
    engine.run_once()  # leased: not delivered again before the lease runs out
    assert collector.events == []
    clock.advance(minutes=17)
    engine.run_once()
    (event,) = collector.events
    assert event["context"]["scheduled_time"] == "2026-11-23T00:05:00Z"
    assert event["context"]["attempt_number"] == "2"
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(LocalFiring)) == 0


def test_two_engines_never_fire_one_occurrence_twice(
    db_sessions: sessionmaker[Session], local: LocalSchedulerBackend, clock: FrozenClock
) -> None:
    clock.now = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    for i in range(120):
        local.create(definition(f"n{i:03d}", "cron(1 0 * * ? *)"), client_token=str(i))
    clock.now = datetime(2026, 11, 23, 0, 1, tzinfo=UTC)
    shared = Collector()
    engines = [LocalEngine(db_sessions, shared, clock=clock, batch=7) for _ in range(3)]
    threads = [threading.Thread(target=e.run_once) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for e in engines:
        e.run_once()
    names = sorted(e["name"] for e in shared.events)
    assert names == [f"n{i:03d}" for i in range(120)]


def test_one_engine_per_sqlite_file(db_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    lock = tmp_path / "tb.db.engine-lock"
    first = LocalEngine(db_sessions, Collector(), lock_path=lock)
    second = LocalEngine(db_sessions, Collector(), lock_path=lock)
    first.start()
    try:
        with pytest.raises(EngineLocked):
            second.start()
    finally:
        first.stop()
    second.start()  # free again once the first has stopped
    second.stop()


def test_chained_and_fixed_delay_tasks_run_on_the_same_timers(
    db_sessions: sessionmaker[Session],
    service: TaskService,
    backend: FaultyBackend,
    tenant: str,
    clock: FrozenClock,
) -> None:
    recorder = Recorder(db_sessions, backend, clock=clock)
    collector = Collector(recorder)
    engine = LocalEngine(db_sessions, collector, clock=clock)
    clock.now = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    chained, _ = service.create(
        tenant,
        {
            "name": "every-third-day",
            "schedule": {
                "kind": "rrule",
                "rrule": "FREQ=DAILY;INTERVAL=3;COUNT=3;BYHOUR=9;BYMINUTE=0",
                "dtstart": "2026-11-24T09:00:00",
                "timezone": "Asia/Seoul",
            },
            "target": {"url": "https://svc.internal/a"},
        },
    )
    delayed, _ = service.create(
        tenant,
        {
            "name": "poll",
            "schedule": {"kind": "fixed_delay", "seconds": 21600},
            "target": {"url": "https://svc.internal/b"},
        },
    )
    until = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    while clock.now < until:
        with db_sessions() as session:
            due = session.scalar(select(func.min(LocalSchedule.next_fire_at)))
        assert due is not None
        clock.now = due + timedelta(seconds=7)  # each run "takes" 7 s to complete
        engine.run_once()
    runs = [(e["task_id"], e["context"]["scheduled_time"]) for e in collector.events]
    assert [t for i, t in runs if i == chained["id"]] == [
        "2026-11-24T00:00:00Z",
        "2026-11-27T00:00:00Z",
        "2026-11-30T00:00:00Z",
    ]
    polls = [datetime.fromisoformat(t) for i, t in runs if i == delayed["id"]]
    # The next run is measured from the completion of the previous one (7 s after its start).
    gaps = {b - a for a, b in itertools.pairwise(polls)}
    assert gaps == {timedelta(hours=6, seconds=7)} and len(polls) >= 25
    with db_sessions() as session:
        assert session.get(Task, chained["id"]).status == "completed"  # type: ignore[union-attr]
        assert session.get(LocalSchedule, delayed["schedule_name"]) is not None
    assert occurrence_key(chained["id"], datetime(2026, 11, 24, tzinfo=UTC), 1).endswith(
        "2026-11-24T00:00:00Z:1"
    )
