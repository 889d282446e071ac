"""Black box: the real server (uvicorn in a subprocess) with the eventbridge backend, talking to
moto's server over HTTP through AWS_ENDPOINT_URL, driven only through the public API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

GROUP = "timebridge-blackbox"
PROXY_ARN = "arn:aws:lambda:us-east-1:123456789012:function:timebridge-proxy"
ROLE_ARN = "arn:aws:iam::123456789012:role/timebridge-scheduler"
KEY = "tb_blackbox-admin-key"
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
def api(
    aws: dict[str, str], scheduler: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("server")
    env = {
        **os.environ,
        **aws,
        "TIMEBRIDGE_BACKEND": "eventbridge",
        "TIMEBRIDGE_EMBEDDED_ENGINE": "false",
        "TIMEBRIDGE_DATABASE_URL": f"sqlite:///{workdir}/tb.db",
        "TIMEBRIDGE_SCHEDULE_GROUP": GROUP,
        "TIMEBRIDGE_PROXY_LAMBDA_ARN": PROXY_ARN,
        "TIMEBRIDGE_SCHEDULER_ROLE_ARN": ROLE_ARN,
        "TIMEBRIDGE_BOOTSTRAP_API_KEY": KEY,
    }
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
