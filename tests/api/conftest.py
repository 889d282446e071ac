"""Fixtures for the API tests: the app wired on the test database, with a fault-injecting
local backend and a recording invoker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.auth import install_key
from service.container import assemble
from service.main import create_app
from service.settings import Settings
from tests.api.test_tasks_api import ADMIN_KEY, OTHER_KEY, VIEWER_KEY
from tests.application.fakes import FaultyBackend, FrozenClock
from tests.support.invokers import RecordingInvoker


@pytest.fixture
def backend(db_sessions: sessionmaker[Session]) -> FaultyBackend:
    return FaultyBackend(LocalSchedulerBackend(db_sessions, clock=FrozenClock()))


@pytest.fixture
def client(db_sessions: sessionmaker[Session], backend: FaultyBackend) -> Iterator[TestClient]:
    clock = FrozenClock()
    settings = Settings(database_url="sqlite://", embedded_engine=False)
    app = create_app(settings, clock=clock)
    app.state.container = assemble(
        settings, db_sessions, backend, clock=clock, invoker=RecordingInvoker()
    )
    install_key(db_sessions, ADMIN_KEY, system_admin=True)
    install_key(db_sessions, VIEWER_KEY, role="viewer")
    install_key(db_sessions, OTHER_KEY, tenant_name="other-team")
    test_client = TestClient(app, raise_server_exceptions=False)
    test_client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    yield test_client
