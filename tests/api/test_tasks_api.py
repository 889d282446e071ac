"""/v1/tasks over HTTP on SQLite and PostgreSQL: every endpoint, auth, the error envelope, and
that bad input or a failing backend leaves nothing behind."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Task
from service.domain.errors import UpstreamThrottled
from service.main import create_app
from service.settings import Settings
from tests.application.fakes import FaultyBackend

ADMIN_KEY = "tb_admin-key-for-tests"
VIEWER_KEY = "tb_viewer-key-for-tests"
OTHER_KEY = "tb_other-tenant-key"


def task_body(**changes: Any) -> dict[str, Any]:
    return {
        "name": "nightly-report",
        "schedule": {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"},
        "target": {
            "url": "https://reports.internal/run",
            "headers": {"Authorization": "Bearer s3cret"},
            "body": {"full": True},
        },
        **changes,
    }


def envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert {"message", "details", "request_id", "timestamp"} <= set(error)
    return error


def stored(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Task)) or 0)


def test_create_returns_201_with_the_compiled_schedule(client: TestClient) -> None:
    response = client.post("/v1/tasks", json=task_body())
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["status"] == "scheduled"
    assert task["aws_expression"] == "cron(0 9 ? * MON-FRI *)"
    assert task["next_fire_times"][0] == "2026-11-24T00:00:00Z"
    assert task["target"]["headers"]["Authorization"] == "***"
    assert "s3cret" not in response.text


def test_create_answers_the_task_as_get_does(client: TestClient) -> None:
    # create encodes its TaskOut itself (one worker-thread hop): same document, type and headers
    response = client.post("/v1/tasks", json=task_body(), headers={"X-Request-Id": "req-1"})
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "req-1"
    fetched = client.get(f"/v1/tasks/{response.json()['id']}")
    assert response.json() == fetched.json()
    assert list(response.json()) == list(fetched.json())  # the model's field order


def test_idempotency_key_replays_and_refuses_another_body(client: TestClient) -> None:
    first = client.post("/v1/tasks", json=task_body(), headers={"Idempotency-Key": "k-1"})
    again = client.post("/v1/tasks", json=task_body(), headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/v1/tasks", json=task_body(name="x"), headers={"Idempotency-Key": "k-1"})
    envelope(other, 409, "CONFLICT")


def test_get_list_patch_pause_resume_and_delete(client: TestClient, backend: FaultyBackend) -> None:
    created = client.post("/v1/tasks", json=task_body()).json()
    url = f"/v1/tasks/{created['id']}"
    assert client.get(url).json()["id"] == created["id"]
    listing = client.get("/v1/tasks", params={"status": "scheduled", "limit": 10}).json()
    assert [t["id"] for t in listing["items"]] == [created["id"]]
    assert listing["next_cursor"] is None
    patched = client.patch(url, json={"schedule": {"kind": "daily", "time": "10:30"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["aws_expression"] == "cron(30 10 * * ? *)"
    assert client.post(f"{url}/pause").json()["status"] == "paused"
    assert [s.enabled for s in backend.list()] == [False]
    assert client.post(f"{url}/resume").json()["status"] == "scheduled"
    deleted = client.delete(url)
    assert deleted.status_code == 200 and deleted.json()["status"] == "cancelled"
    assert list(backend.list()) == []
    assert client.get(url).json()["status"] == "cancelled"
    envelope(client.post(f"{url}/pause"), 409, "CONFLICT")


def test_batch_reports_per_item(client: TestClient) -> None:
    response = client.post(
        "/v1/tasks/batch",
        json={"tasks": [task_body(), task_body(schedule={"kind": "daily", "time": "25:00"})]},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["created"], result["failed"]) == (1, 1)
    assert [r["status"] for r in result["results"]] == [201, 422]
    assert result["results"][1]["error"]["field"] == "schedule.time"


def test_explain_validates_like_create(client: TestClient) -> None:
    bad = {"kind": "cron", "expression": "cron(0 9 ? * 0 *)"}
    error = envelope(
        client.post("/v1/tasks", json=task_body(schedule=bad)), 422, "INVALID_SCHEDULE"
    )
    explained = envelope(
        client.post("/v1/schedules/explain", json={"schedule": bad}), 422, "INVALID_SCHEDULE"
    )
    assert error["details"] == explained["details"]
    assert error["details"][0]["field"] == "schedule.expression"


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        (task_body(schedule={"kind": "daily", "time": "9am"}), "INVALID_SCHEDULE", "schedule.time"),
        (task_body(target={"url": "file:///etc/passwd"}), "VALIDATION_ERROR", "target.url"),
        (task_body(target={"url": "http://169.254.169.254/"}), "VALIDATION_ERROR", "target.url"),
        (task_body(colour="red"), "VALIDATION_ERROR", "colour"),
        (
            task_body(target={"url": "https://x.internal", "body": "y" * 270_000}),
            "VALIDATION_ERROR",
            "target",
        ),
    ],
)
def test_bad_input_is_422_and_stores_nothing(
    client: TestClient,
    db_sessions: sessionmaker[Session],
    backend: FaultyBackend,
    payload: dict[str, Any],
    code: str,
    field: str,
) -> None:
    error = envelope(client.post("/v1/tasks", json=payload), 422, code)
    assert any(field in d["field"] for d in error["details"]), error
    assert stored(db_sessions) == 0
    assert backend.calls == 0


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/tasks", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    envelope(response, 422, "VALIDATION_ERROR")


def test_throttled_backend_is_503_with_retry_after_and_leaves_nothing(
    client: TestClient, backend: FaultyBackend, db_sessions: sessionmaker[Session]
) -> None:
    def throttled(*args: Any, **kwargs: Any) -> str:
        raise UpstreamThrottled("slow down", retry_after=3)

    backend.create = throttled  # type: ignore[method-assign]
    response = client.post("/v1/tasks", json=task_body())
    envelope(response, 503, "UPSTREAM_THROTTLED")
    assert response.headers["Retry-After"] == "3"
    assert stored(db_sessions) == 0


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Basic abc", "Bearer not-a-key", "Bearer " + "x" * 600]
)
def test_missing_or_bad_credentials_are_401(client: TestClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    client.headers.pop("Authorization")
    envelope(client.get("/v1/tasks", headers=headers), 401, "UNAUTHORIZED")


def test_viewer_reads_but_cannot_write(client: TestClient) -> None:
    created = client.post("/v1/tasks", json=task_body()).json()
    viewer = {"Authorization": f"Bearer {VIEWER_KEY}"}
    assert client.get(f"/v1/tasks/{created['id']}", headers=viewer).status_code == 200
    envelope(client.post("/v1/tasks", json=task_body(), headers=viewer), 403, "FORBIDDEN")
    envelope(client.delete(f"/v1/tasks/{created['id']}", headers=viewer), 403, "FORBIDDEN")


def test_other_tenants_tasks_answer_404_like_missing_ones(client: TestClient) -> None:
    created = client.post("/v1/tasks", json=task_body()).json()
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    for method, suffix in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/pause")]:
        kwargs: dict[str, Any] = {"headers": other}
        if method == "PATCH":
            kwargs["json"] = {"name": "stolen"}
        theirs = client.request(method, f"/v1/tasks/{created['id']}{suffix}", **kwargs)
        missing = client.request(
            method, f"/v1/tasks/00000000-0000-4000-8000-000000000000{suffix}", **kwargs
        )
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["error"]["message"].replace(created["id"], "ID") == missing.json()[
            "error"
        ]["message"].replace("00000000-0000-4000-8000-000000000000", "ID")
    assert client.get("/v1/tasks", headers=other).json()["items"] == []
    assert client.get(f"/v1/tasks/{created['id']}").json()["name"] == "nightly-report"


def test_ready_checks_the_database(client: TestClient) -> None:
    assert client.get("/ready").json() == {"status": "ok", "database": "ok"}
    assert client.get("/live").json() == {"status": "ok"}


def test_ready_is_503_when_the_database_does_not_answer(tmp_path: Any) -> None:
    from service.container import build_container

    settings = Settings(database_url=f"sqlite:///{tmp_path}/tb.db", embedded_engine=False)
    app = create_app(settings)
    container = build_container(settings)
    container.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    app.state.container = container
    response = TestClient(app).get("/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}


def test_unknown_placeholders_are_refused_and_nothing_is_stored(
    client: TestClient, db_sessions: sessionmaker[Session], backend: FaultyBackend
) -> None:
    body = task_body()
    body["target"]["body"] = {"when": "{{scheduled_time}}", "who": "{{task.owner}}"}
    error = envelope(client.post("/v1/tasks", json=body), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "target.body"
    assert "task.owner" in error["details"][0]["reason"]
    assert stored(db_sessions) == 0 and backend.calls == 0
    body["target"]["body"] = {"reply_to": "{{callback_url}}"}
    envelope(client.post("/v1/tasks", json=body), 422, "VALIDATION_ERROR")
    body["callback"] = {"enabled": True}
    assert client.post("/v1/tasks", json=body).status_code == 201
