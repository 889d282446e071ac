"""Direct targets through the SchedulerBackend contract (issue "Targets beyond HTTP"; SEEDS S0-01,
S2-03, C-12): a schedule with its own target round-trips on both backends, and on EventBridge
(moto) the schedule's Target is the resource itself: its ARN, the scheduler role, the rendered
Input, SqsParameters / EventBridgeParameters, and the same retry policy and dead-letter queue
as the proxy's schedules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.scheduler.eventbridge import (
    DEFAULT_RETRY_POLICY,
    EventBridgeSchedulerBackend,
    make_scheduler_client,
)
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.tasks import TaskService
from service.domain.provisioning import SchedulerBackend, ScheduleTarget
from service.domain.targets import ATTEMPT_ATTRIBUTE, SCHEDULED_TIME_ATTRIBUTE, SNS_PUBLISH_ARN
from tests.application.fakes import add_tenant
from tests.contract.test_scheduler_backend import GROUP, PROXY_ARN, ROLE_ARN, definition

DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:timebridge-schedule-dlq"
ACCOUNT = "123456789012"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:jobs.fifo"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts"
FUNCTION = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:worker"
BUS = f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default"


@pytest.fixture(params=["eventbridge", "local"])
def backend(
    request: pytest.FixtureRequest, aws_env: None, db_sessions: sessionmaker[Session]
) -> Iterator[SchedulerBackend]:
    if request.param == "local":
        yield LocalSchedulerBackend(db_sessions, group=GROUP)
        return
    from moto import mock_aws

    with mock_aws():
        client = make_scheduler_client()
        client.create_schedule_group(Name=GROUP)
        yield EventBridgeSchedulerBackend(
            group=GROUP, target_arn=PROXY_ARN, role_arn=ROLE_ARN, client=client
        )


@pytest.mark.parametrize(
    "target",
    [
        ScheduleTarget(arn=QUEUE, message_group_id="reports"),
        ScheduleTarget(arn=BUS, detail_type="report.due", source="com.example"),
        ScheduleTarget(arn=FUNCTION),
    ],
)
def test_a_schedule_with_its_own_target_round_trips(
    backend: SchedulerBackend, target: ScheduleTarget
) -> None:
    wanted = definition(input='{"job":"<aws.scheduler.scheduled-time>"}', target=target)
    backend.create(wanted, client_token="t1")
    info = backend.get(wanted.name)
    assert info is not None and info.definition == wanted


def test_switching_between_the_proxy_and_a_direct_target_leaves_nothing_stale(
    backend: SchedulerBackend,
) -> None:
    backend.create(
        definition(target=ScheduleTarget(arn=QUEUE, message_group_id="g")), client_token="t"
    )
    back_to_proxy = definition()
    backend.update(back_to_proxy)
    info = backend.get(back_to_proxy.name)
    assert info is not None and info.definition == back_to_proxy
    to_bus = definition(target=ScheduleTarget(arn=BUS, detail_type="d", source="s"))
    backend.update(to_bus)
    info = backend.get(to_bus.name)
    assert info is not None and info.definition == to_bus


# --- the wire: tasks of each type written to EventBridge Scheduler (moto) -------------------------


@pytest.fixture
def aws_tasks(
    aws_env: None, db_sessions: sessionmaker[Session]
) -> Iterator[tuple[TaskService, Any, str]]:
    from moto import mock_aws

    with mock_aws():
        client = make_scheduler_client()
        client.create_schedule_group(Name=GROUP)
        backend = EventBridgeSchedulerBackend(
            group=GROUP,
            target_arn=PROXY_ARN,
            role_arn=ROLE_ARN,
            dead_letter_arn=DLQ_ARN,
            client=client,
        )
        tenant = add_tenant(db_sessions)
        yield TaskService(db_sessions, backend), client, tenant


def schedule_target(client: Any, task: dict[str, Any]) -> dict[str, Any]:
    raw = client.get_schedule(Name=task["schedule_name"], GroupName=GROUP)
    target: dict[str, Any] = raw["Target"]
    assert target["RoleArn"] == ROLE_ARN
    assert target["RetryPolicy"] == DEFAULT_RETRY_POLICY
    assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}
    return target


def create(service: TaskService, tenant: str, target: dict[str, Any]) -> dict[str, Any]:
    body = {"name": "report", "schedule": {"kind": "rate", "expression": "rate(5 minutes)"}}
    task, _ = service.create(tenant, {**body, "target": target})
    return task


def test_sqs_task_targets_the_queue_with_its_fifo_group(
    aws_tasks: tuple[TaskService, Any, str],
) -> None:
    service, client, tenant = aws_tasks
    task = create(
        service,
        tenant,
        {
            "type": "sqs",
            "queue_arn": QUEUE,
            "message": "{{task.name}} {{task.id}} at {{scheduled_time}}",
            "message_group_id": "reports",
        },
    )
    target = schedule_target(client, task)
    assert target["Arn"] == QUEUE
    assert target["Input"] == f"report {task['id']} at {SCHEDULED_TIME_ATTRIBUTE}"
    assert target["SqsParameters"] == {"MessageGroupId": "reports"}
    assert "EventBridgeParameters" not in target


def test_lambda_task_targets_the_function_with_its_payload(
    aws_tasks: tuple[TaskService, Any, str],
) -> None:
    service, client, tenant = aws_tasks
    task = create(
        service,
        tenant,
        {"type": "lambda", "function_arn": FUNCTION, "payload": {"n": "{{attempt}}", "k": [1]}},
    )
    target = schedule_target(client, task)
    assert target["Arn"] == FUNCTION
    assert json.loads(target["Input"]) == {"n": ATTEMPT_ATTRIBUTE, "k": [1]}


def test_sns_task_targets_the_topic_or_publish_when_it_has_a_subject(
    aws_tasks: tuple[TaskService, Any, str],
) -> None:
    service, client, tenant = aws_tasks
    plain = schedule_target(
        client, create(service, tenant, {"type": "sns", "topic_arn": TOPIC, "message": "hello"})
    )
    assert (plain["Arn"], plain["Input"]) == (TOPIC, "hello")
    titled = schedule_target(
        client,
        create(
            service, tenant, {"type": "sns", "topic_arn": TOPIC, "message": "hi", "subject": "S"}
        ),
    )
    assert titled["Arn"] == SNS_PUBLISH_ARN
    assert json.loads(titled["Input"]) == {"TopicArn": TOPIC, "Message": "hi", "Subject": "S"}


def test_eventbridge_task_targets_the_bus_with_detail_type_and_source(
    aws_tasks: tuple[TaskService, Any, str],
) -> None:
    service, client, tenant = aws_tasks
    task = create(
        service,
        tenant,
        {
            "type": "eventbridge",
            "event_bus_arn": BUS,
            "detail_type": "report.due",
            "source": "com.example.reports",
            "detail": {"task": "{{task.id}}"},
        },
    )
    target = schedule_target(client, task)
    assert target["Arn"] == BUS
    assert json.loads(target["Input"]) == {"task": task["id"]}
    assert target["EventBridgeParameters"] == {
        "DetailType": "report.due",
        "Source": "com.example.reports",
    }


def test_changing_an_sqs_task_to_http_goes_back_to_the_proxy(
    aws_tasks: tuple[TaskService, Any, str],
) -> None:
    service, client, tenant = aws_tasks
    task = create(
        service,
        tenant,
        {"type": "sqs", "queue_arn": QUEUE, "message": "m", "message_group_id": "g"},
    )
    service.update(tenant, task["id"], {"target": {"url": "https://example.com/run"}})
    target = schedule_target(client, task)
    assert target["Arn"] == PROXY_ARN
    assert "SqsParameters" not in target
    assert json.loads(target["Input"])["target"]["url"] == "https://example.com/run"
