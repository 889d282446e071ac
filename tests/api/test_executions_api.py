"""History, run now, manual retry, callbacks and alerts over HTTP on SQLite and PostgreSQL
(issue "Firing path"; SEEDS S0-04 history and failed list with manual retry, S0-05 callbacks)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from proxy_lambda.signing import make_callback_token
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.auth import install_key
from service.application.recorder import outcome_from_record
from service.container import Container, assemble
from service.domain.executions import parse_utc
from service.main import create_app
from service.settings import Settings
from tests.api.test_tasks_api import ADMIN_KEY, OTHER_KEY, VIEWER_KEY, envelope, task_body
from tests.application.fakes import FrozenClock
from tests.support.invokers import RecordingInvoker

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # 24 bytes, test only


@pytest.fixture
def invoker() -> RecordingInvoker:
    return RecordingInvoker()


@pytest.fixture
def container(db_sessions: sessionmaker[Session], invoker: RecordingInvoker) -> Container:
    clock = FrozenClock()
    settings = Settings(database_url="sqlite://", embedded_engine=False)
    backend = LocalSchedulerBackend(db_sessions, clock=clock)
    return assemble(
        settings, db_sessions, backend, clock=clock, invoker=invoker, signing_secret=SECRET
    )


@pytest.fixture
def client(db_sessions: sessionmaker[Session], container: Container) -> Iterator[TestClient]:
    app = create_app(container.settings, clock=container.recorder.clock)
    app.state.container = container
    install_key(db_sessions, ADMIN_KEY, system_admin=True)
    install_key(db_sessions, VIEWER_KEY, role="viewer")
    install_key(db_sessions, OTHER_KEY, tenant_name="other-team")
    test_client = TestClient(app, raise_server_exceptions=False)
    test_client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    yield test_client


def outcome_for(event: dict[str, Any], status: str, code: int | None) -> dict[str, Any]:
    """What the proxy would report for the event a run handed to the invoker."""
    scheduled = event["context"]["scheduled_time"]
    return {
        "occurrence_key": f"{event['task_id']}:{scheduled}:{event['attempt']}",
        "tenant_id": event["tenant_id"],
        "started_at": scheduled,
        "status": status,
        "status_code": code,
        "latency_ms": 5,
        "response_headers": {},
        "response_body": "boom" if status != "success" else "ok",
    }


def make_task(client: TestClient, **changes: Any) -> dict[str, Any]:
    response = client.post("/v1/tasks", json=task_body(**changes))
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def test_run_now_starts_a_pending_manual_execution_and_leaves_the_schedule(
    client: TestClient, invoker: RecordingInvoker
) -> None:
    task = make_task(client)
    response = client.post(f"/v1/tasks/{task['id']}/run")
    assert response.status_code == 202, response.text
    execution = response.json()
    assert (execution["status"], execution["trigger"], execution["attempt"]) == (
        "pending",
        "manual",
        1,
    )
    (event,) = invoker.events
    assert event["task_id"] == task["id"] and event["attempt"] == 1
    assert event["context"]["execution_id"] == execution["id"]
    assert event["context"]["scheduled_time"] == execution["scheduled_time"]
    # Stamped to the microsecond: never the same occurrence as a scheduled fire.
    assert parse_utc(execution["scheduled_time"]).microsecond != 0
    assert event["target"]["headers"]["Authorization"] == "Bearer s3cret"  # the proxy needs it
    assert client.get(f"/v1/tasks/{task['id']}").json()["version"] == task["version"]


def test_history_lists_filters_and_pages_and_survives_cancel(
    client: TestClient, invoker: RecordingInvoker, container: Container
) -> None:
    task = make_task(client)
    for _ in range(3):
        container.recorder.clock.advance(seconds=1)  # type: ignore[attr-defined]
        assert client.post(f"/v1/tasks/{task['id']}/run").status_code == 202
    statuses = ["success", "failed", "success"]
    for event, status in zip(invoker.events, statuses, strict=True):
        record = outcome_for(event, status, 200 if status == "success" else 500)
        container.recorder.record_outcome(outcome_from_record(record))
    first = client.get(f"/v1/tasks/{task['id']}/executions", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = client.get(
        f"/v1/tasks/{task['id']}/executions", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    seen = [e["status"] for e in first["items"] + rest["items"]]
    assert seen == list(reversed(statuses))  # newest first
    failed = client.get("/v1/executions", params={"status": "failed"}).json()["items"]
    assert [(e["status"], e["status_code"], e["response"]["body"]) for e in failed] == [
        ("failed", 500, "boom")
    ]
    one = client.get(f"/v1/executions/{failed[0]['id']}")
    assert one.status_code == 200 and one.json()["id"] == failed[0]["id"]
    assert client.delete(f"/v1/tasks/{task['id']}").json()["status"] == "cancelled"
    assert len(client.get(f"/v1/tasks/{task['id']}/executions").json()["items"]) == 3


def test_manual_retry_of_a_failed_execution(
    client: TestClient, invoker: RecordingInvoker, container: Container
) -> None:
    task = make_task(client)
    run = client.post(f"/v1/tasks/{task['id']}/run").json()
    container.recorder.record_outcome(
        outcome_from_record(outcome_for(invoker.events[0], "failed", 503))
    )
    # Manual runs are not retried on their own; the failed list offers the button.
    assert client.get(f"/v1/executions/{run['id']}").json()["next_attempt_at"] is None
    retried = client.post(f"/v1/executions/{run['id']}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["attempt"] == 2
    assert retried.json()["scheduled_time"] == run["scheduled_time"]
    assert invoker.events[1]["attempt"] == 2
    container.recorder.record_outcome(
        outcome_from_record(outcome_for(invoker.events[1], "success", 200))
    )
    envelope(client.post(f"/v1/executions/{retried.json()['id']}/retry"), 409, "CONFLICT")
    envelope(client.post(f"/v1/executions/{task['id']}/retry"), 404, "NOT_FOUND")


def test_callbacks_over_http(
    client: TestClient, invoker: RecordingInvoker, container: Container
) -> None:
    task = make_task(client, callback={"enabled": True, "timeout_seconds": 600})
    client.post(f"/v1/tasks/{task['id']}/run")
    event = invoker.events[0]
    key = f"{event['task_id']}:{event['context']['scheduled_time']}:1"
    token = make_callback_token(key, SECRET)
    unauthenticated = TestClient(client.app, raise_server_exceptions=False)  # the token is enough
    url = f"/v1/callbacks/{token}"
    assert unauthenticated.put(url, json={"status": "processing"}).json()["status"] == "processing"
    container.recorder.record_outcome(outcome_from_record(outcome_for(event, "success", 202)))
    done = unauthenticated.put(url, json={"status": "success", "output": {"rows": 7}})
    assert done.status_code == 200 and done.json()["status"] == "success"
    envelope(unauthenticated.put(url, json={"status": "failed"}), 409, "CALLBACK_CLOSED")
    envelope(unauthenticated.put(url, json={"status": "done"}), 422, "VALIDATION_ERROR")
    envelope(unauthenticated.put(url, json={"status": "success", "x": 1}), 422, "VALIDATION_ERROR")
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    envelope(
        unauthenticated.put(f"/v1/callbacks/{forged}", json={"status": "success"}), 404, "NOT_FOUND"
    )
    envelope(
        unauthenticated.put("/v1/callbacks/nonsense", json={"status": "success"}), 404, "NOT_FOUND"
    )
    execution = client.get("/v1/executions").json()["items"][0]
    assert execution["status"] == "success" and execution["output"] == {"result": {"rows": 7}}


def test_final_failures_show_in_alerts(
    client: TestClient, invoker: RecordingInvoker, container: Container
) -> None:
    task = make_task(client)
    client.post(f"/v1/tasks/{task['id']}/run")
    container.recorder.record_outcome(
        outcome_from_record(outcome_for(invoker.events[0], "failed", 500))
    )
    alerts = client.get("/v1/alerts").json()["items"]
    assert [a["kind"] for a in alerts] == ["final_failure"]
    assert alerts[0]["task_id"] == task["id"]
    other = client.get("/v1/alerts", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert other.json()["items"] == []


def test_roles_and_tenants(client: TestClient, invoker: RecordingInvoker) -> None:
    task = make_task(client)
    run = client.post(f"/v1/tasks/{task['id']}/run").json()
    viewer = {"Authorization": f"Bearer {VIEWER_KEY}"}
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    envelope(client.post(f"/v1/tasks/{task['id']}/run", headers=viewer), 403, "FORBIDDEN")
    assert client.get(f"/v1/executions/{run['id']}", headers=viewer).status_code == 200
    envelope(client.get(f"/v1/executions/{run['id']}", headers=other), 404, "NOT_FOUND")
    envelope(client.get(f"/v1/tasks/{task['id']}/executions", headers=other), 404, "NOT_FOUND")
    envelope(client.post(f"/v1/tasks/{task['id']}/run", headers=other), 404, "NOT_FOUND")
    assert client.get("/v1/executions", headers=other).json()["items"] == []
    assert len(invoker.events) == 1


def test_bad_filters_are_422(client: TestClient) -> None:
    envelope(client.get("/v1/executions", params={"status": "weird"}), 422, "VALIDATION_ERROR")
    envelope(client.get("/v1/executions", params={"cursor": "nope"}), 422, "VALIDATION_ERROR")
    naive = client.get("/v1/executions", params={"since": "2026-11-23T00:00:00"})
    envelope(naive, 422, "VALIDATION_ERROR")
    assert client.get("/v1/executions", params={"since": "2026-11-23T00:00:00Z"}).status_code == 200


def test_a_cancelled_task_cannot_run(client: TestClient) -> None:
    task = make_task(client)
    client.delete(f"/v1/tasks/{task['id']}")
    envelope(client.post(f"/v1/tasks/{task['id']}/run"), 409, "CONFLICT")


def test_metrics_report_tasks_executions_and_histograms(
    client: TestClient, invoker: RecordingInvoker, container: Container
) -> None:
    task = make_task(client)
    client.post(f"/v1/tasks/{task['id']}/run")
    container.recorder.record_outcome(
        outcome_from_record(outcome_for(invoker.events[0], "failed", 500))
    )
    response = client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'timebridge_tasks{status="scheduled"} 1' in text
    assert 'timebridge_executions{status="failed"} 1' in text
    assert 'timebridge_executions_recorded_total{status="failed"} 1' in text
    assert "timebridge_execution_duration_seconds_count 1" in text
    assert 'timebridge_execution_lateness_seconds_bucket{le="+Inf"} 1' in text
    assert task["id"] not in text  # aggregates only
