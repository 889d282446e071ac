"""`/metrics` after a scripted run holds exactly the figures the run made (issue 10
"Operator experience"; SEEDS 001/002 metrics): tasks and executions by status, the duration and
lateness histograms, scheduler errors and throttles, reconciler repairs; and on Lambda the same
figures leave as CloudWatch embedded-metric lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.auth import ensure_tenant, install_key
from service.application.recorder import outcome_from_record
from service.container import Container, assemble
from service.domain.errors import UpstreamThrottled
from service.domain.executions import parse_utc
from service.domain.provisioning import ScheduleDefinition
from service.main import create_app
from service.metrics import EmfWriter, Metrics
from service.recorder import sweep
from service.settings import Settings
from tests.api.test_executions_api import outcome_for
from tests.api.test_tasks_api import ADMIN_KEY, task_body
from tests.application.fakes import FrozenClock
from tests.support.invokers import RecordingInvoker


class ThrottlingBackend(LocalSchedulerBackend):
    """The local backend, throttled on the next `throttle` creates."""

    throttle = 0

    def create(
        self,
        definition: ScheduleDefinition,
        *,
        client_token: str,
        also: Callable[[Connection, str], None] | None = None,
    ) -> str:
        if self.throttle:
            self.throttle -= 1
            raise UpstreamThrottled("Rate exceeded", retry_after=2)
        return super().create(definition, client_token=client_token, also=also)


@pytest.fixture
def invoker() -> RecordingInvoker:
    return RecordingInvoker()


@pytest.fixture
def backend(db_sessions: sessionmaker[Session]) -> ThrottlingBackend:
    return ThrottlingBackend(db_sessions, clock=FrozenClock())


@pytest.fixture
def container(
    db_sessions: sessionmaker[Session], invoker: RecordingInvoker, backend: ThrottlingBackend
) -> Container:
    clock = FrozenClock()
    settings = Settings(database_url="sqlite://", embedded_engine=False)
    return assemble(settings, db_sessions, backend, clock=clock, invoker=invoker)


@pytest.fixture
def client(db_sessions: sessionmaker[Session], container: Container) -> TestClient:
    app = create_app(container.settings, clock=container.recorder.clock)
    app.state.container = container
    install_key(db_sessions, ADMIN_KEY, system_admin=True)
    test_client = TestClient(app, raise_server_exceptions=False)
    test_client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    return test_client


def record(
    container: Container, event: dict[str, Any], status: str, latency_ms: int, late: float
) -> None:
    outcome = outcome_for(event, status, 200 if status == "success" else 500)
    started = parse_utc(event["context"]["scheduled_time"]) + timedelta(seconds=late)
    outcome["started_at"] = f"{started:%Y-%m-%dT%H:%M:%S.%f}Z"
    outcome["latency_ms"] = latency_ms
    container.recorder.record_outcome(outcome_from_record(outcome))


def samples(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_a_scripted_run_shows_in_every_figure(
    client: TestClient, container: Container, invoker: RecordingInvoker, backend: ThrottlingBackend
) -> None:
    tasks = [client.post("/v1/tasks", json=task_body(name=f"t{i}")).json() for i in range(3)]
    client.post(f"/v1/tasks/{tasks[2]['id']}/pause")
    backend.throttle = 1
    throttled = client.post("/v1/tasks", json=task_body(name="throttled"))
    assert throttled.status_code == 503 and throttled.headers["Retry-After"] == "2"
    for task in tasks[:2]:
        assert client.post(f"/v1/tasks/{task['id']}/run").status_code == 202
    first, second = invoker.events
    record(container, first, "success", 80, 0.3)  # buckets: duration 0.1, lateness 0.5
    record(container, second, "failed", 3000, 45.0)  # buckets: duration 5, lateness 60
    orphan = ScheduleDefinition(
        name="tb-" + "b" * 32, expression="rate(5 minutes)", expression_timezone="UTC", input="{}"
    )
    backend.create(orphan, client_token="orphan")
    assert sweep(container)["reconcile_repairs"] == 1

    text = client.get("/metrics", headers={"Authorization": ""}).text
    values = samples(text)
    assert values['timebridge_tasks{status="scheduled"}'] == 2
    assert values['timebridge_tasks{status="paused"}'] == 1
    assert values['timebridge_executions{status="success"}'] == 1
    assert values['timebridge_executions{status="failed"}'] == 1
    assert values['timebridge_executions_recorded_total{status="success"}'] == 1
    assert values['timebridge_executions_recorded_total{status="failed"}'] == 1
    assert values['timebridge_scheduler_errors_total{code="UPSTREAM_THROTTLED"}'] == 1
    assert values["timebridge_reconciler_repairs_total"] == 1
    duration = "timebridge_execution_duration_seconds"
    assert values[f'{duration}_bucket{{le="0.05"}}'] == 0
    assert values[f'{duration}_bucket{{le="0.1"}}'] == 1
    assert values[f'{duration}_bucket{{le="2.5"}}'] == 1
    assert values[f'{duration}_bucket{{le="5"}}'] == 2
    assert values[f"{duration}_count"] == 2
    assert values[f"{duration}_sum"] == pytest.approx(3.08)
    lateness = "timebridge_execution_lateness_seconds"
    assert values[f'{lateness}_bucket{{le="0.1"}}'] == 0
    assert values[f'{lateness}_bucket{{le="0.5"}}'] == 1
    assert values[f'{lateness}_bucket{{le="30"}}'] == 1
    assert values[f'{lateness}_bucket{{le="60"}}'] == 2
    assert values[f'{lateness}_bucket{{le="+Inf"}}'] == 2
    assert values[f"{lateness}_sum"] == pytest.approx(45.3)


def test_on_lambda_the_same_figures_are_embedded_metric_lines(
    db_sessions: sessionmaker[Session], container: Container, invoker: RecordingInvoker
) -> None:
    lines: list[str] = []
    metrics = Metrics(emf=EmfWriter("prod", write=lines.append, clock=lambda: 1_795_400_000.0))
    metrics.observe_execution("failed", 3000, 45.0)
    metrics.count("timebridge_scheduler_errors_total", code="UPSTREAM_THROTTLED")
    metrics.count("timebridge_reconciler_repairs_total", 2)
    task = container.tasks.create(ensure_tenant(db_sessions, "default"), task_body())[0]
    assert task["status"] == "scheduled"
    metrics.publish_gauges(db_sessions)
    documents = [json.loads(line) for line in lines]
    execution, throttle, repairs, gauge = documents[:4]
    definition = execution["_aws"]["CloudWatchMetrics"][0]
    assert definition["Namespace"] == "Timebridge"
    assert definition["Dimensions"] == [["Stage", "Status"]]
    assert {m["Name"]: m["Unit"] for m in definition["Metrics"]} == {
        "Executions": "Count",
        "ExecutionDuration": "Milliseconds",
        "ExecutionLateness": "Seconds",
    }
    assert execution["_aws"]["Timestamp"] == 1_795_400_000_000
    assert (execution["Stage"], execution["Status"], execution["ExecutionLateness"]) == (
        "prod",
        "failed",
        45.0,
    )
    assert (throttle["Code"], throttle["SchedulerErrors"]) == ("UPSTREAM_THROTTLED", 1.0)
    assert repairs["ReconcilerRepairs"] == 2.0
    assert (gauge["Status"], gauge["Tasks"]) == ("scheduled", 1)
