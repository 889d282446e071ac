"""Direct targets over HTTP (issue "Targets beyond HTTP"; SEEDS S0-01, S2-03, C-12, S0-03): each
type is created and shown as given; every bad input is a 422 in the error envelope naming the
field, with no task and no schedule left behind (and a PATCH changes nothing); http secrets are
still redacted."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import LocalSchedule
from service.domain.targets import TargetPolicy
from tests.api.test_tasks_api import envelope, stored, task_body

ACCOUNT = "123456789012"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:jobs"
TARGETS: dict[str, dict[str, Any]] = {
    "lambda": {
        "type": "lambda",
        "function_arn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:worker",
        "payload": {"task": "{{task.id}}"},
    },
    "sqs": {"type": "sqs", "queue_arn": QUEUE, "message": "run {{task.name}}"},
    "sns": {
        "type": "sns",
        "topic_arn": f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts",
        "message": "due",
        "subject": "Report",
    },
    "eventbridge": {
        "type": "eventbridge",
        "event_bus_arn": f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default",
        "detail_type": "report.due",
        "source": "com.example",
        "detail": {"at": "{{scheduled_time}}"},
    },
}


def schedules(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(LocalSchedule)) or 0)


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_each_direct_type_is_created_and_shown_as_given(client: TestClient, kind: str) -> None:
    response = client.post("/v1/tasks", json=task_body(target=TARGETS[kind]))
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["status"] == "scheduled"
    assert task["target"] == TARGETS[kind]
    assert client.get(f"/v1/tasks/{task['id']}").json()["target"] == TARGETS[kind]


BAD: list[tuple[dict[str, Any], str]] = [
    ({**TARGETS["sqs"], "queue_arn": "arn:aws:sqs:us-east-1:123:jobs"}, "target.queue_arn"),
    ({**TARGETS["lambda"], "function_arn": "worker"}, "target.function_arn"),
    ({**TARGETS["sns"], "topic_arn": QUEUE}, "target.topic_arn"),
    ({**TARGETS["eventbridge"], "event_bus_arn": QUEUE}, "target.event_bus_arn"),
    ({**TARGETS["sqs"], "queue_arn": QUEUE + ".fifo"}, "target.message_group_id"),
    ({**TARGETS["sqs"], "message": "x" * (256 * 1024 + 1)}, "target.message"),
    ({**TARGETS["sqs"], "message": "{{nope}}"}, "target.message"),
    ({**TARGETS["lambda"], "payload": {"cb": "{{callback_url}}"}}, "target.payload"),
    ({**TARGETS["sns"], "subject": "a\nb"}, "target.subject"),
    ({**TARGETS["eventbridge"], "detail": [1]}, "target.detail"),
    ({**TARGETS["eventbridge"], "source": ""}, "target.source"),
    ({"type": "carrier-pigeon"}, "target.type"),
]


@pytest.mark.parametrize(("target", "field"), BAD)
def test_bad_direct_targets_are_422_naming_the_field_and_nothing_is_stored(
    client: TestClient, db_sessions: sessionmaker[Session], target: dict[str, Any], field: str
) -> None:
    error = envelope(
        client.post("/v1/tasks", json=task_body(target=target)), 422, "VALIDATION_ERROR"
    )
    assert error["details"][0]["field"] == field
    assert stored(db_sessions) == 0
    assert schedules(db_sessions) == 0


def test_a_bad_patch_leaves_the_task_and_its_schedule_as_they_were(
    client: TestClient, db_sessions: sessionmaker[Session]
) -> None:
    task = client.post("/v1/tasks", json=task_body(target=TARGETS["sqs"])).json()
    bad = {**TARGETS["sqs"], "queue_arn": "arn:aws:sqs:us-east-1:123456789012:bad name"}
    response = client.patch(f"/v1/tasks/{task['id']}", json={"target": bad})
    assert envelope(response, 422, "VALIDATION_ERROR")["details"][0]["field"] == "target.queue_arn"
    after = client.get(f"/v1/tasks/{task['id']}").json()
    assert (after["target"], after["version"]) == (TARGETS["sqs"], task["version"])


def test_cross_region_and_unreachable_targets_are_refused_clearly(
    client: TestClient, db_sessions: sessionmaker[Session]
) -> None:
    container: Any = client.app.state.container  # type: ignore[attr-defined]
    container.tasks.target_policy = TargetPolicy(
        region="us-east-1", allowed_arns=(f"arn:aws:sqs:*:{ACCOUNT}:jobs*",)
    )
    far = {**TARGETS["sqs"], "queue_arn": QUEUE.replace("us-east-1", "eu-west-1")}
    error = envelope(client.post("/v1/tasks", json=task_body(target=far)), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "target.queue_arn"
    assert "eu-west-1" in error["details"][0]["reason"]
    error = envelope(
        client.post("/v1/tasks", json=task_body(target=TARGETS["eventbridge"])),
        422,
        "VALIDATION_ERROR",
    )
    assert error["details"][0]["field"] == "target.event_bus_arn"
    assert "scheduler role cannot reach" in error["details"][0]["reason"]
    assert stored(db_sessions) == 0
    assert client.post("/v1/tasks", json=task_body(target=TARGETS["sqs"])).status_code == 201


def test_http_secrets_are_still_redacted_beside_direct_targets(client: TestClient) -> None:
    client.post("/v1/tasks", json=task_body(target=TARGETS["sqs"]))
    response = client.post("/v1/tasks", json=task_body())
    assert response.json()["target"]["headers"]["Authorization"] == "***"
    listed = client.get("/v1/tasks").text
    assert "s3cret" not in listed and "run {{task.name}}" in listed


def test_the_openapi_document_states_the_target_union(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["TaskIn"]
    members = schema["properties"]["target"]["anyOf"]
    kinds = [member["properties"]["type"]["enum"][0] for member in members]
    assert kinds == ["http", "lambda", "sqs", "sns", "eventbridge", "event"]
    assert "type" not in members[0]["required"]  # http stays the default
    assert all("type" in member["required"] for member in members[1:])


def test_a_direct_target_needs_a_native_schedule_and_a_compiled_window(
    client: TestClient, db_sessions: sessionmaker[Session]
) -> None:
    """EventBridge reports nothing back for a direct delivery (S0-01, S1-14): a schedule chained
    from outcome to outcome, a window only the proxy could check, limits on running executions,
    or a task waiting for a direct target's success would silently stop or be ignored on AWS, so
    all are refused; a window the cron states exactly, and a chain on failure (dead letters report
    it), are accepted."""
    chained = task_body(target=TARGETS["sqs"], schedule={"kind": "fixed_delay", "seconds": 600})
    error = envelope(client.post("/v1/tasks", json=chained), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "schedule"
    off_hour = {"days": ["mon"], "start": "08:30", "end": "20:00", "timezone": "Asia/Seoul"}
    windowed = task_body(target=TARGETS["sqs"], window=off_hour)
    error = envelope(client.post("/v1/tasks", json=windowed), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "window"
    locked = task_body(target=TARGETS["sqs"], overlap="skip")
    error = envelope(client.post("/v1/tasks", json=locked), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "overlap"
    upstream = client.post("/v1/tasks", json=task_body()).json()
    gated = task_body(target=TARGETS["sqs"], depends_on=[upstream["id"]])
    error = envelope(client.post("/v1/tasks", json=gated), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "depends_on"
    assert stored(db_sessions) == 1 and schedules(db_sessions) == 1  # the upstream task only
    direct = client.post("/v1/tasks", json=task_body(target=TARGETS["sns"])).json()
    waiting = task_body(depends_on=[direct["id"]])
    error = envelope(client.post("/v1/tasks", json=waiting), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "depends_on"
    chained = task_body(schedule={"kind": "after", "tasks": [direct["id"]], "on": "success"})
    error = envelope(client.post("/v1/tasks", json=chained), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "schedule.tasks"
    on_failure = task_body(schedule={"kind": "after", "tasks": [direct["id"]], "on": "failure"})
    assert client.post("/v1/tasks", json=on_failure).status_code == 201  # dead letters report it
    assert stored(db_sessions) == 3
    exact = {**off_hour, "start": "08:00"}
    created = client.post("/v1/tasks", json=task_body(target=TARGETS["sqs"], window=exact))
    assert created.status_code == 201, created.text
    task = created.json()
    response = client.patch(f"/v1/tasks/{task['id']}", json={"outside_window": "defer"})
    assert envelope(response, 422, "VALIDATION_ERROR")["details"][0]["field"] == "window"
    assert client.get(f"/v1/tasks/{task['id']}").json()["version"] == task["version"]
