"""Black box: the real server (uvicorn in a subprocess) with the eventbridge backend, talking to
moto's server over HTTP through AWS_ENDPOINT_URL, driven only through the public API. The last
tests walk the whole firing path as AWS would run it (issue "Firing path", item 6)."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.proxy.loopback import TargetServer

GROUP = "timebridge-blackbox"
PROXY_ARN = "arn:aws:lambda:us-east-1:123456789012:function:timebridge-proxy"
ROLE_ARN = "arn:aws:iam::123456789012:role/timebridge-scheduler"
KEY = "tb_blackbox-admin-key"
SIGNING_SECRET = "whsec_" + "YmxhY2stYm94LXNpZ25pbmctc2VjcmV0"  # test only
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    yield env
    server.stop()


@pytest.fixture(scope="module")
def scheduler(aws: dict[str, str]) -> Any:
    import boto3

    client = boto3.client(
        "scheduler",
        endpoint_url=aws["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_schedule_group(Name=GROUP)
    return client


@pytest.fixture(scope="module")
def server_env(aws: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The deployment's settings, shared by the API server and the recorder "Lambda"."""
    workdir = tmp_path_factory.mktemp("server")
    return {
        **aws,
        "TIMEBRIDGE_BACKEND": "eventbridge",
        "TIMEBRIDGE_EMBEDDED_ENGINE": "false",
        "TIMEBRIDGE_DATABASE_URL": f"sqlite:///{workdir}/tb.db",
        "TIMEBRIDGE_SCHEDULE_GROUP": GROUP,
        "TIMEBRIDGE_PROXY_LAMBDA_ARN": PROXY_ARN,
        "TIMEBRIDGE_SCHEDULER_ROLE_ARN": ROLE_ARN,
        "TIMEBRIDGE_BOOTSTRAP_API_KEY": KEY,
        "TIMEBRIDGE_SIGNING_SECRET": SIGNING_SECRET,
        "TIMEBRIDGE_SECRETS_KEY": "dGltZWJyaWRnZS1ibGFja2JveC1zZWNyZXRzLWtleSE=",  # test only
        "TIMEBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
    }


@pytest.fixture(scope="module")
def api(server_env: dict[str, str], scheduler: Any) -> Iterator[httpx.Client]:
    port = int(server_env["TIMEBRIDGE_PUBLIC_URL"].rsplit(":", 1)[1])
    env = {**os.environ, **server_env}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.main:app", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"server did not start:\n{output}")
            time.sleep(0.2)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def test_created_task_is_one_exact_schedule_in_eventbridge(
    api: httpx.Client, scheduler: Any
) -> None:
    response = api.post(
        "/v1/tasks",
        json={
            "name": "weekday-report",
            "schedule": {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"},
            "target": {"url": "https://reports.internal/run"},
        },
    )
    assert response.status_code == 201, response.text
    task = response.json()
    schedule = scheduler.get_schedule(Name=task["schedule_name"], GroupName=GROUP)
    assert schedule["Arn"] == task["schedule_arn"]
    assert schedule["ScheduleExpression"] == "cron(0 9 ? * MON-FRI *)"
    assert schedule["ScheduleExpressionTimezone"] == "Asia/Seoul"
    assert schedule["State"] == "ENABLED"
    assert schedule["ActionAfterCompletion"] == "NONE"
    assert schedule["Target"]["Arn"] == PROXY_ARN
    assert schedule["Target"]["RoleArn"] == ROLE_ARN
    document = json.loads(schedule["Target"]["Input"])
    assert document["task_id"] == task["id"]
    assert document["context"] == {
        "schedule_arn": "<aws.scheduler.schedule-arn>",
        "scheduled_time": "<aws.scheduler.scheduled-time>",
        "execution_id": "<aws.scheduler.execution-id>",
        "attempt_number": "<aws.scheduler.attempt-number>",
    }


def test_one_time_task_deletes_after_completion_and_cancel_removes_it(
    api: httpx.Client, scheduler: Any
) -> None:
    created = api.post(
        "/v1/tasks",
        json={
            "name": "in-ten-minutes",
            "schedule": {"kind": "delay", "seconds": 600},
            "target": {"url": "https://svc.internal/hook"},
        },
    ).json()
    schedule = scheduler.get_schedule(Name=created["schedule_name"], GroupName=GROUP)
    assert schedule["ScheduleExpression"].startswith("at(")
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["ActionAfterCompletion"] == "DELETE"

    cancelled = api.delete(f"/v1/tasks/{created['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    names = [s["Name"] for s in scheduler.list_schedules(GroupName=GROUP)["Schedules"]]
    assert created["schedule_name"] not in names
    assert api.get(f"/v1/tasks/{created['id']}").json()["status"] == "cancelled"


def test_pause_disables_the_schedule(api: httpx.Client, scheduler: Any) -> None:
    created = api.post(
        "/v1/tasks",
        json={
            "name": "paused",
            "schedule": {"kind": "rate", "expression": "rate(5 minutes)"},
            "target": {"url": "https://svc.internal/hook"},
        },
    ).json()
    assert api.post(f"/v1/tasks/{created['id']}/pause").json()["status"] == "paused"
    schedule = scheduler.get_schedule(Name=created["schedule_name"], GroupName=GROUP)
    assert schedule["State"] == "DISABLED"
    assert schedule["ScheduleExpression"] == "rate(5 minutes)"


# --- the whole firing path, as AWS runs it ----------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[TargetServer]:
    server = TargetServer().start()
    yield server
    server.stop()


@pytest.fixture
def recorder_lambda(server_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """`service.recorder.handler` as the recorder Lambda runs it: settings from its environment
    (the same database and schedule group as the API), built on its first event."""
    import service.recorder

    for name, value in server_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(service.recorder, "_container", None)
    yield service.recorder.handler
    if service.recorder._container is not None:
        service.recorder._container.engine.dispose()


def fire(scheduler: Any, name: str, public_url: str) -> tuple[dict[str, Any], Any]:
    """What EventBridge Scheduler and the proxy Lambda do at fire time: read the schedule, fill
    in the context attributes, run the proxy handler. Returns (event, outcome)."""
    from proxy_lambda.handler import handle
    from proxy_lambda.settings import ProxySettings
    from proxy_lambda.signing import parse_signing_secrets
    from service.domain.tasks import fill_context

    schedule = scheduler.get_schedule(Name=name, GroupName=GROUP)
    expression = schedule["ScheduleExpression"]
    assert expression.startswith("at(")
    scheduled = expression[3:-1] + "Z"
    text = fill_context(
        schedule["Target"]["Input"],
        schedule_arn=schedule["Arn"],
        scheduled_time=scheduled,
        execution_id=str(uuid.uuid4()),
        attempt_number=1,
    )
    event = json.loads(text)
    settings = ProxySettings(
        signing_keys=parse_signing_secrets(SIGNING_SECRET),
        public_url=public_url,
        allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),),
    )
    return event, handle(event, settings=settings)


def sqs_event(*bodies: Any) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{index}",
                "body": body if isinstance(body, str) else json.dumps(body),
                "eventSource": "aws:sqs",
            }
            for index, body in enumerate(bodies)
        ]
    }


def destination_record(event: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """The record Lambda's on-success destination sends for an asynchronous invocation."""
    return {
        "version": "1.0",
        "timestamp": "2026-11-23T06:00:01.000Z",
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": PROXY_ARN + ":$LATEST",
            "condition": "Success",
            "approximateInvokeCount": 1,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": outcome,
    }


def test_whole_path_success_with_a_callback(
    api: httpx.Client,
    scheduler: Any,
    receiver: TargetServer,
    recorder_lambda: Any,
    server_env: dict[str, str],
) -> None:
    task = api.post(
        "/v1/tasks",
        json={
            "name": "long-job",
            "schedule": {"kind": "delay", "seconds": 60},
            "target": {"url": receiver.url("/jobs"), "body": {"size": 3}},
            "callback": {"enabled": True, "timeout_seconds": 900},
        },
    ).json()
    event, outcome = fire(scheduler, task["schedule_name"], server_env["TIMEBRIDGE_PUBLIC_URL"])
    assert outcome["status"] == "success", outcome
    request = receiver.received[-1]
    # The receiver can check the signature with the Standard Webhooks library.
    from standardwebhooks.webhooks import Webhook

    Webhook(SIGNING_SECRET).verify(request.body, request.headers)
    assert request.headers["webhook-id"] == outcome["occurrence_key"]
    callback_url = request.headers["timebridge-callback-url"]
    assert callback_url.startswith(server_env["TIMEBRIDGE_PUBLIC_URL"] + "/v1/callbacks/")

    answer = recorder_lambda(sqs_event(destination_record(event, outcome)), None)
    assert answer == {"batchItemFailures": []}
    again = recorder_lambda(sqs_event(destination_record(event, outcome)), None)  # redelivery
    assert again == {"batchItemFailures": []}
    (execution,) = api.get(f"/v1/tasks/{task['id']}/executions").json()["items"]
    assert execution["status"] == "pending" and execution["status_code"] == 200

    reported = httpx.put(callback_url, json={"status": "success", "output": {"rows": 3}})
    assert reported.status_code == 200, reported.text
    (execution,) = api.get(f"/v1/tasks/{task['id']}/executions").json()["items"]
    assert execution["status"] == "success" and execution["output"] == {"result": {"rows": 3}}
    assert api.get(f"/v1/tasks/{task['id']}").json()["status"] == "completed"


def test_whole_path_failure_retries_through_a_one_time_schedule(
    api: httpx.Client,
    scheduler: Any,
    receiver: TargetServer,
    recorder_lambda: Any,
    server_env: dict[str, str],
) -> None:
    task = api.post(
        "/v1/tasks",
        json={
            "name": "flaky",
            "schedule": {"kind": "delay", "seconds": 60},
            "target": {"url": receiver.url("/status/503")},
            "retry": {"max_attempts": 2, "base_delay_seconds": 5, "max_delay_seconds": 5},
        },
    ).json()
    event, outcome = fire(scheduler, task["schedule_name"], server_env["TIMEBRIDGE_PUBLIC_URL"])
    assert (outcome["status"], outcome["status_code"]) == ("failed", 503)
    garbage = "not json at all"
    answer = recorder_lambda(sqs_event(destination_record(event, outcome), garbage), None)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}  # to the DLQ, not lost

    (first,) = api.get(f"/v1/tasks/{task['id']}/executions").json()["items"]
    assert first["status"] == "failed" and first["next_attempt_at"] is not None
    listed = scheduler.list_schedules(GroupName=GROUP, NamePrefix=task["schedule_name"] + "-")
    (retry_name,) = [s["Name"] for s in listed["Schedules"]]
    retry_event, retry_outcome = fire(scheduler, retry_name, server_env["TIMEBRIDGE_PUBLIC_URL"])
    assert retry_event["attempt"] == 2
    assert retry_event["context"]["scheduled_time"] == event["context"]["scheduled_time"]
    assert retry_outcome["occurrence_key"].endswith(":2")
    assert recorder_lambda(sqs_event(destination_record(retry_event, retry_outcome)), None) == {
        "batchItemFailures": []
    }
    rows = api.get(f"/v1/tasks/{task['id']}/executions").json()["items"]
    assert [(r["attempt"], r["status"]) for r in rows] == [(2, "failed"), (1, "failed")]
    assert api.get(f"/v1/tasks/{task['id']}").json()["status"] == "failed"
    alerts = api.get("/v1/alerts").json()["items"]
    assert any(a["task_id"] == task["id"] and a["kind"] == "final_failure" for a in alerts)
    failed = api.get("/v1/executions", params={"status": "failed"}).json()["items"]
    assert {r["id"] for r in rows} <= {r["id"] for r in failed}
