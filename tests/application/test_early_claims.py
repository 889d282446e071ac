"""The local engine claims occurrences ahead of time (its lookahead). What a user does to a task
meanwhile must still hold as on EventBridge (issue "Embedded local engine": never lose or
duplicate an occurrence; S1-14 flexible windows): a pause or cancel takes back every firing not
yet sent, an update takes back only those still ahead (they are claimed again as updated), and a
one-time task that already fired is not made again by a late update."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import LocalFiring, LocalSchedule
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.tasks import TaskService
from service.domain.executions import format_scheduled_time
from tests.application.fakes import FrozenClock, add_tenant


def claim(sessions: sessionmaker[Session], name: str, scheduled: datetime, due: datetime) -> str:
    """An outbox row as the engine writes it when it claims an occurrence."""
    firing_id = str(uuid.uuid4())
    with sessions() as session:
        session.add(
            LocalFiring(
                id=firing_id,
                schedule_name=name,
                schedule_arn=f"arn:local:{name}",
                scheduled_time=scheduled,
                due_at=due,
                input="{}",
                deliveries=1,
                lease_until=due + timedelta(minutes=2),
                created_at=scheduled - timedelta(seconds=10),
                priority=0,
            )
        )
        session.commit()
    return firing_id


def outbox(sessions: sessionmaker[Session]) -> set[str]:
    with sessions() as session:
        return set(session.scalars(select(LocalFiring.id)))


def service(sessions: sessionmaker[Session]) -> tuple[FrozenClock, TaskService, str]:
    """A task service on the local backend with a frozen clock, and a tenant."""
    clock = FrozenClock()
    tasks = TaskService(sessions, LocalSchedulerBackend(sessions, clock=clock), clock=clock)
    return clock, tasks, add_tenant(sessions)


def test_pause_takes_back_a_firing_waiting_in_its_flexible_window(
    db_sessions: sessionmaker[Session],
) -> None:
    clock, tasks, tenant = service(db_sessions)
    body = {
        "name": "flexible",
        "schedule": {"kind": "cron", "expression": "*/5 * * * *", "flexible_window_minutes": 15},
        "target": {"url": "https://reports.internal/run"},
    }
    task = tasks.create(tenant, body)[0]
    now = clock()
    passed = claim(
        db_sessions, task["schedule_name"], now - timedelta(seconds=30), now + timedelta(minutes=5)
    )
    ahead = claim(
        db_sessions, task["schedule_name"], now + timedelta(seconds=5), now + timedelta(seconds=5)
    )
    tasks.update(tenant, task["id"], {"name": "flexible-2"})
    assert outbox(db_sessions) == {passed}  # an update keeps what it would not claim again
    tasks.pause(tenant, task["id"])
    assert outbox(db_sessions) == set()  # paused: nothing waiting may fire
    assert ahead not in outbox(db_sessions)


def test_a_late_update_does_not_make_a_fired_one_time_schedule_again(
    db_sessions: sessionmaker[Session],
) -> None:
    clock, tasks, tenant = service(db_sessions)
    when = clock() + timedelta(seconds=30)
    body = {
        "name": "once",
        "schedule": {"kind": "once", "at": format_scheduled_time(when)},
        "target": {"url": "https://reports.internal/run"},
    }
    task = tasks.create(tenant, body)[0]
    # The engine claims it and removes the one-time schedule (ActionAfterCompletion=DELETE);
    # its outcome is not recorded yet when the task is renamed.
    with db_sessions() as session:
        session.delete(session.get(LocalSchedule, task["schedule_name"]))
        session.commit()
    clock.advance(seconds=31)
    renamed = tasks.update(tenant, task["id"], {"name": "once-renamed"})
    assert renamed["name"] == "once-renamed"
    with db_sessions() as session:
        assert session.get(LocalSchedule, task["schedule_name"]) is None
    # Moved to a new time, it is a new occurrence: made again.
    later = format_scheduled_time(clock() + timedelta(minutes=5))
    tasks.update(tenant, task["id"], {"schedule": {"kind": "once", "at": later}})
    with db_sessions() as session:
        assert session.get(LocalSchedule, task["schedule_name"]) is not None
