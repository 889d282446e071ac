"""Schemathesis against the app's own OpenAPI document, in process (ASGI), on SQLite.

Every documented operation gets positive and negative generated cases under a fixed seed, at least
1,000 in all, each sent with an admin key. Acceptance: no server error, every status code
documented for its operation, every body valid against the documented schema and every
content type as documented. PostgreSQL is left to the other API tests to keep this fast.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.failures import FailureGroup, ServerError
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.auth import install_key
from service.application.reconcile import Reconciler
from service.application.tasks import TaskService
from service.container import Container
from service.main import create_app
from service.settings import Settings
from tests.api.test_tasks_api import task_body
from tests.application.fakes import FrozenClock

ADMIN_KEY = "tb_admin-key-for-fuzzing"
AUTHORIZATION = {"Authorization": f"Bearer {ADMIN_KEY}"}
SEED = 20261123
# Per operation and generation mode; 10 operations x 2 modes leave room above MIN_CASES even
# though /health has a single possible request.
EXAMPLES_PER_RUN = 75
MIN_CASES = 1_000
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
EXPECTED_OPERATIONS = {
    "GET /health",
    "POST /v1/schedules/explain",
    "POST /v1/tasks",
    "GET /v1/tasks",
    "POST /v1/tasks/batch",
    "GET /v1/tasks/{task_id}",
    "PATCH /v1/tasks/{task_id}",
    "DELETE /v1/tasks/{task_id}",
    "POST /v1/tasks/{task_id}/pause",
    "POST /v1/tasks/{task_id}/resume",
}


@dataclass
class Tally:
    cases: int = 0
    per_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    schema_failures: list[str] = field(default_factory=list)

    def run(self, case: Case) -> None:
        """Send one case and sort its failures; never raises, so every case is counted."""
        self.cases += 1
        self.per_operation[case.operation.label] += 1
        try:
            response = case.call()
        except Exception as exc:  # the app raised past its handlers: a 500 for the client
            self.server_errors.append(f"{case.operation.label}: {exc!r}")
            return
        self.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                where = f"{case.operation.label} -> {response.status_code}: {failure.title}"
                report = f"{where}\n{failure.message}\n{case.as_curl_command()}"
                if isinstance(failure, ServerError):
                    self.server_errors.append(report)
                else:
                    self.schema_failures.append(report)


def fuzz(strategy: st.SearchStrategy[Case], tally: Tally) -> None:
    # No shrinking and no example database: failures are collected, not raised, and a run is
    # the same on every machine.
    @seed(SEED)
    @settings(
        max_examples=EXAMPLES_PER_RUN,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(case=strategy)
    def run(case: Case) -> None:
        tally.run(case)

    run()


@pytest.fixture
def app(db_sessions: sessionmaker[Session]) -> FastAPI:
    """The app on the test database, like tests/api/test_tasks_api.py builds it."""
    clock = FrozenClock()
    bind = db_sessions.kw["bind"]
    assert isinstance(bind, Engine)
    # Schemathesis runs the app's lifespan, which builds a container from these settings: point
    # it at the same database and give it the admin key, so it writes no development key file.
    settings = Settings(
        database_url=bind.url.render_as_string(hide_password=False),
        embedded_engine=False,
        bootstrap_api_key=ADMIN_KEY,
    )
    built = create_app(settings, clock=clock)
    backend = LocalSchedulerBackend(db_sessions, clock=clock)
    built.state.test_container = Container(
        settings=settings,
        engine=bind,
        sessions=db_sessions,
        backend=backend,
        tasks=TaskService(db_sessions, backend, clock=clock),
        reconciler=Reconciler(db_sessions, backend, clock=clock),
    )
    install_key(db_sessions, ADMIN_KEY, system_admin=True)
    return built


def create_task(app: FastAPI, **changes: Any) -> str:
    with_auth = TestClient(app, headers=AUTHORIZATION)
    response = with_auth.post("/v1/tasks", json=task_body(**changes))
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def strategy_for(operation: APIOperation, mode: GenerationMode, app: FastAPI) -> Any:
    generated = operation.as_strategy(generation_mode=mode, headers=AUTHORIZATION)
    if "{task_id}" not in operation.path:
        return generated
    # Random ids only ever meet 404: aim half the cases at a task that exists.
    existing = operation.as_strategy(
        generation_mode=mode, headers=AUTHORIZATION, path_parameters={"task_id": create_task(app)}
    )
    return st.one_of(generated, existing)


@pytest.mark.parametrize("migrated_engine", ["sqlite"], indirect=True)
def test_openapi_fuzz_finds_no_server_error_and_no_schema_violation(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # The lifespan has run now; wire the app like the other API tests (frozen clock everywhere).
    app.state.container = app.state.test_container
    tally = Tally()
    operations: list[APIOperation] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            pytest.fail(f"schemathesis cannot use an operation: {result.err()}")
        operations.append(result.ok())
    assert {operation.label for operation in operations} == EXPECTED_OPERATIONS

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(strategy_for(operation, mode, app), tally)

    print(
        f"\nschemathesis: {tally.cases} cases, {len(tally.server_errors)} server errors, "
        f"{len(tally.schema_failures)} schema failures"
    )
    print(f"per operation: {dict(tally.per_operation)}")
    print(f"statuses: {dict(sorted(tally.statuses.items()))}")
    assert not tally.server_errors, "\n\n".join(tally.server_errors[:10])
    assert not tally.schema_failures, "\n\n".join(tally.schema_failures[:10])
    assert tally.cases >= MIN_CASES
