"""The task API's execution-control fields (issue 9 part B): overlap, max_concurrency,
priority, window and outside_window on create, get, list, patch and batch, with 422s that name
the field and leave what is stored untouched. SEEDS S1-01 (priority), S1-04 (concurrency caps,
execution windows), S1-14 (TASK_LOCKED / error envelope)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_tasks_api import envelope, task_body

WINDOW = {"days": ["mon", "fri"], "start": "08:00", "end": "20:00", "timezone": "Asia/Seoul"}


def test_control_fields_are_stored_and_returned(client: TestClient) -> None:
    """S1-01 / S1-04: what is sent comes back on create, get and list."""
    body = task_body(overlap="buffer_one", max_concurrency=2, priority=7, window=WINDOW)
    created = client.post("/v1/tasks", json=body)
    assert created.status_code == 201, created.text
    task = created.json()
    expected = {
        "overlap": "buffer_one",
        "max_concurrency": 2,
        "priority": 7,
        "window": WINDOW,
        "outside_window": "skip",
    }
    assert {key: task[key] for key in expected} == expected
    fetched = client.get(f"/v1/tasks/{task['id']}").json()
    assert {key: fetched[key] for key in expected} == expected
    listed = client.get("/v1/tasks").json()["items"][0]
    assert listed["priority"] == 7


def test_defaults_when_the_fields_are_absent(client: TestClient) -> None:
    task = client.post("/v1/tasks", json=task_body()).json()
    assert (task["overlap"], task["max_concurrency"], task["priority"]) == ("allow", None, 0)
    assert (task["window"], task["outside_window"]) == (None, "skip")


def test_a_window_in_the_schedules_zone_is_compiled_and_shown_in_next_fires(
    client: TestClient,
) -> None:
    """S1-04: weekdays 09:00 Seoul with a Monday-and-Friday window provisions a cron() for
    Monday and Friday only, and the next fires say so."""
    task = client.post("/v1/tasks", json=task_body(window=WINDOW)).json()
    assert task["aws_expression"] == "cron(0 9 ? * 2,6 *)"
    assert task["next_fire_times"][:2] == ["2026-11-27T00:00:00Z", "2026-11-30T00:00:00Z"]


def test_a_defer_window_is_not_compiled_so_its_occurrences_can_be_deferred(
    client: TestClient,
) -> None:
    """S1-04: with `defer`, occurrences outside the window must fire to be deferred, so the
    cron() stays whole and the proxy checks each one; switching to `skip` compiles it."""
    task = client.post("/v1/tasks", json=task_body(window=WINDOW, outside_window="defer")).json()
    assert task["aws_expression"] == "cron(0 9 ? * MON-FRI *)"
    skip = client.patch(f"/v1/tasks/{task['id']}", json={"outside_window": "skip"}).json()
    assert skip["aws_expression"] == "cron(0 9 ? * 2,6 *)"


def test_patch_changes_and_clears_control_fields(client: TestClient) -> None:
    task = client.post("/v1/tasks", json=task_body(window=WINDOW, max_concurrency=3)).json()
    patched = client.patch(
        f"/v1/tasks/{task['id']}",
        json={"overlap": "skip", "priority": -2, "window": None, "max_concurrency": None},
    )
    assert patched.status_code == 200, patched.text
    view = patched.json()
    assert (view["overlap"], view["priority"], view["max_concurrency"]) == ("skip", -2, None)
    assert view["window"] is None
    assert view["aws_expression"] == "cron(0 9 ? * MON-FRI *)"  # the window's restriction is gone


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"overlap": "queue"}, "overlap"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": -1}, "max_concurrency"),
        ({"priority": "high"}, "priority"),
        ({"outside_window": "later"}, "outside_window"),
        ({"window": {**WINDOW, "days": ["mon", "funday"]}}, "window.days"),
        ({"window": {**WINDOW, "start": "25:00"}}, "window.start"),
        ({"window": {**WINDOW, "end": "07:00"}}, "window.end"),
        ({"window": {**WINDOW, "timezone": "Asia/Atlantis"}}, "window.timezone"),
        ({"window": {**WINDOW, "days": ["sat", "sun"]}}, "window.days"),
    ],
)
def test_bad_control_fields_are_refused_naming_the_field(
    client: TestClient, changes: dict[str, Any], field: str
) -> None:
    """S1-04 / S1-14: a 422 in the error envelope names the field; nothing is created, and a
    bad PATCH leaves the stored task as it was."""
    error = envelope(client.post("/v1/tasks", json=task_body(**changes)), 422, "VALIDATION_ERROR")
    assert any(field in str(detail.get("field")) for detail in error["details"]), error
    assert client.get("/v1/tasks").json()["items"] == []
    task = client.post("/v1/tasks", json=task_body()).json()
    error = envelope(client.patch(f"/v1/tasks/{task['id']}", json=changes), 422, "VALIDATION_ERROR")
    assert client.get(f"/v1/tasks/{task['id']}").json()["version"] == task["version"]


def test_batch_items_carry_control_fields(client: TestClient) -> None:
    response = client.post(
        "/v1/tasks/batch",
        json={"tasks": [task_body(priority=3), task_body(overlap="never")]},
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["task"]["priority"] == 3
    assert (results[1]["status"], results[1]["error"]["field"]) == (422, "overlap")
