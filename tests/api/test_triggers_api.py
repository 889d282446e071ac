"""The HTTP contract of issue 9 part A: `POST /v1/events`, event and after schedules, depends_on,
`POST /v1/tasks/{id}/backfill` and `GET /v1/schedules`, with bad input answered in the error
envelope and nothing stored. Seeds: S3-05 event triggers, S3-08 trigger counts, S1-14
DEPENDENCY_FAILED, S1-07 schedule listing."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.api.test_tasks_api import OTHER_KEY, VIEWER_KEY, envelope, stored

OTHER = {"Authorization": f"Bearer {OTHER_KEY}"}


def make(client: TestClient, name: str, schedule: dict[str, Any], **extra: Any) -> dict[str, Any]:
    headers = extra.pop("headers", {})
    body = {"name": name, "schedule": schedule, "target": {"url": f"https://svc.internal/{name}"}}
    response = client.post("/v1/tasks", json={**body, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def test_events_run_matching_tasks_and_count_them(client: TestClient) -> None:
    """S3-05 / S3-08: 202 with what ran; the task shows trigger_count and last_triggered_at."""
    task = make(client, "on-order", {"kind": "event", "topic": "orders.**"})
    assert (task["status"], task["mode"], task["schedule_arn"]) == ("scheduled", "trigger", None)
    assert task["trigger_count"] == 0 and task["last_triggered_at"] is None

    response = client.post("/v1/events", json={"topic": "orders.eu.created", "payload": {"n": 1}})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["matched"] == 1 and body["executions"][0]["task_id"] == task["id"]
    shown = client.get(f"/v1/tasks/{task['id']}").json()
    assert shown["trigger_count"] == 1 and shown["last_triggered_at"] is not None

    nothing = client.post("/v1/events", json={"topic": "payments.created", "payload": {}})
    assert nothing.status_code == 202 and nothing.json()["matched"] == 0
    theirs = client.post("/v1/events", json={"topic": "orders.created"}, headers=OTHER)
    assert theirs.status_code == 202 and theirs.json()["matched"] == 0  # tenants are apart


def test_bad_topics_patterns_and_filters_are_422_naming_the_field(
    client: TestClient, db_sessions: sessionmaker[Session]
) -> None:
    error = envelope(client.post("/v1/events", json={"topic": "a..b"}), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "topic"
    envelope(client.post("/v1/events", json={"payload": {}}), 422, "VALIDATION_ERROR")
    before = stored(db_sessions)
    cases = [
        ({"kind": "event", "topic": "orders.*x"}, "schedule.topic"),
        ({"kind": "event", "topic": "a", "filter": {"x": {"like": 1}}}, "schedule.filter.x.like"),
        ({"kind": "event", "topic": "a", "filter": {"x": {"in": 1}}}, "schedule.filter.x.in"),
        ({"kind": "after", "tasks": [], "on": "success"}, "schedule.tasks"),
        ({"kind": "after", "tasks": ["x"], "on": "often"}, "schedule.on"),
    ]
    for schedule, field in cases:
        response = client.post(
            "/v1/tasks",
            json={"name": "bad", "schedule": schedule, "target": {"url": "https://svc.internal/"}},
        )
        error = envelope(response, 422, "VALIDATION_ERROR")
        assert error["details"][0]["field"] == field
    assert stored(db_sessions) == before


def test_unknown_and_other_tenant_ids_are_404_and_cycles_422(
    client: TestClient, db_sessions: sessionmaker[Session]
) -> None:
    theirs = make(client, "theirs", {"kind": "rate", "expression": "rate(1 hour)"}, headers=OTHER)
    mine = make(client, "mine", {"kind": "rate", "expression": "rate(1 hour)"})
    before = stored(db_sessions)
    for ids in ([theirs["id"]], ["00000000-0000-4000-8000-000000000000"]):
        response = client.post(
            "/v1/tasks",
            json={
                "name": "chain",
                "schedule": {"kind": "after", "tasks": ids},
                "target": {"url": "https://svc.internal/"},
            },
        )
        envelope(response, 404, "NOT_FOUND")
        patch = client.patch(f"/v1/tasks/{mine['id']}", json={"depends_on": ids})
        envelope(patch, 404, "NOT_FOUND")
    assert stored(db_sessions) == before

    chain = make(client, "chain", {"kind": "after", "tasks": [mine["id"]], "on": "completion"})
    cycle = client.patch(f"/v1/tasks/{mine['id']}", json={"depends_on": [chain["id"]]})
    error = envelope(cycle, 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "depends_on"
    assert client.get(f"/v1/tasks/{mine['id']}").json()["depends_on"] == []

    gated = make(
        client, "gated", {"kind": "rate", "expression": "rate(1 hour)"}, depends_on=[mine["id"]]
    )
    assert gated["depends_on"] == [mine["id"]]
    assert gated["dependency_gate"] == "DEPENDENCY_FAILED"  # mine has not succeeded yet


def test_backfill_answers_202_with_what_was_queued_and_refuses_bad_windows(
    client: TestClient,
) -> None:
    client.app.state.container.triggers.background = False  # type: ignore[attr-defined]
    task = make(client, "hourly", {"kind": "cron", "expression": "0 * * * *"})
    window = {"from": "2026-11-23T01:00:00Z", "to": "2026-11-23T04:00:00Z", "max": 10}
    response = client.post(f"/v1/tasks/{task['id']}/backfill", json=window)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["queued"], body["first"], body["last"]) == (
        3,
        "2026-11-23T01:00:00Z",
        "2026-11-23T03:00:00Z",
    )
    future = {**window, "to": "2030-01-01T00:00:00Z"}
    error = envelope(
        client.post(f"/v1/tasks/{task['id']}/backfill", json=future), 422, "VALIDATION_ERROR"
    )
    assert error["details"][0]["field"] == "to"
    missing = client.post("/v1/tasks/00000000-0000-4000-8000-000000000000/backfill", json=window)
    envelope(missing, 404, "NOT_FOUND")
    viewer = client.post(
        f"/v1/tasks/{task['id']}/backfill",
        json=window,
        headers={"Authorization": f"Bearer {VIEWER_KEY}"},
    )
    envelope(viewer, 403, "FORBIDDEN")


def test_schedules_listing_is_tenant_scoped_and_admins_see_all(client: TestClient) -> None:
    """S1-07: operators list the provisioned schedules."""
    mine = make(
        client, "mine", {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"}
    )
    theirs = make(
        client, "theirs", {"kind": "rate", "expression": "rate(5 minutes)"}, headers=OTHER
    )
    make(client, "evt", {"kind": "event", "topic": "a"})

    everything = client.get("/v1/schedules").json()  # the bootstrap key is a system admin
    assert {item["task_id"] for item in everything["items"]} == {mine["id"], theirs["id"]}
    own = client.get("/v1/schedules", headers=OTHER).json()
    assert [item["task_id"] for item in own["items"]] == [theirs["id"]]
    [item] = own["items"]
    assert item["expression"] == "rate(5 minutes)" and item["state"] == "ENABLED"
    assert item["name"] == theirs["schedule_name"] and item["arn"] == theirs["schedule_arn"]
    envelope(client.get("/v1/schedules?limit=0"), 422, "VALIDATION_ERROR")


def test_batch_creates_trigger_tasks_and_the_reconciler_leaves_them_alone(
    client: TestClient,
) -> None:
    upstream = make(client, "upstream", {"kind": "rate", "expression": "rate(1 hour)"})
    target = {"url": "https://svc.internal/x"}
    response = client.post(
        "/v1/tasks/batch",
        json={
            "tasks": [
                {"name": "e", "schedule": {"kind": "event", "topic": "a.**"}, "target": target},
                {
                    "name": "c",
                    "schedule": {"kind": "after", "tasks": [upstream["id"]]},
                    "target": target,
                },
                {"name": "bad", "schedule": {"kind": "after", "tasks": ["nope"]}, "target": target},
            ]
        },
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 201, 404]
    assert {r["task"]["status"] for r in results[:2]} == {"scheduled"}
    report = client.app.state.container.reconciler.run()  # type: ignore[attr-defined]
    assert report.errors == [] and report.repairs == 0
