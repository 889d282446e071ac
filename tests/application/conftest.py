"""Fixtures for the use-case tests: a frozen clock, the local backend wrapped for fault
injection, and the services on the test database."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.reconcile import Reconciler
from service.application.tasks import TaskService
from tests.application.fakes import FaultyBackend, FrozenClock, add_tenant


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def backend(db_sessions: sessionmaker[Session], clock: FrozenClock) -> FaultyBackend:
    return FaultyBackend(LocalSchedulerBackend(db_sessions, clock=clock))


@pytest.fixture
def service(
    db_sessions: sessionmaker[Session], backend: FaultyBackend, clock: FrozenClock
) -> TaskService:
    return TaskService(db_sessions, backend, clock=clock)


@pytest.fixture
def reconciler(
    db_sessions: sessionmaker[Session], backend: FaultyBackend, clock: FrozenClock
) -> Reconciler:
    return Reconciler(db_sessions, backend, clock=clock)


@pytest.fixture
def tenant(db_sessions: sessionmaker[Session]) -> str:
    return add_tenant(db_sessions)
