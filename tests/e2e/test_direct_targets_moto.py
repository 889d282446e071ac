"""The local engine delivers direct targets through boto3 to whatever AWS_ENDPOINT_URL points at
(issue "Targets beyond HTTP"; SEEDS S0-01, S2-03, C-12, S0-03): here moto's server on a free
port. A message lands in the SQS queue, an event is put on the bus (a rule forwards it to a
queue), the SNS topic receives (an SQS subscription reads it), the Lambda is invoked (moto's
Lambda without Docker), and each delivery is an execution. A refused delivery is a failed
execution carrying the AWS error, retried through the task's retry policy."""

from __future__ import annotations

import io
import json
import socket
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy_lambda.settings import ProxySettings
from service.adapters.db.models import Execution
from service.adapters.invoke import DirectRunInvoker, LambdaInvoker, LocalDelivery, ThreadInvoker
from service.adapters.scheduler.engine import LocalEngine
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.history import HistoryService
from service.application.recorder import Recorder
from service.application.tasks import TaskService
from tests.application.fakes import FrozenClock, add_tenant

ACCOUNT = "123456789012"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # Lambda without Docker (these machines run none): moto answers invokes itself.
    request = urllib.request.Request(
        f"{url}/moto-api/config",
        data=json.dumps({"lambda": {"use_docker": False}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as answer:
        assert json.loads(answer.read())["lambda"]["use_docker"] is False
    yield url
    server.stop()


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The process's AWS settings point at moto (as a laptop's would at a real account)."""
    import boto3

    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    return boto3.session.Session(region_name=REGION)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 23, 5, 0, tzinfo=UTC))


@pytest.fixture
def world(
    aws: Any, db_sessions: sessionmaker[Session], clock: FrozenClock
) -> tuple[TaskService, LocalEngine, str]:
    backend = LocalSchedulerBackend(db_sessions, clock=clock)
    recorder = Recorder(db_sessions, backend, clock=clock)
    engine = LocalEngine(db_sessions, LocalDelivery(recorder, ProxySettings()), clock=clock)
    return TaskService(db_sessions, backend, clock=clock), engine, add_tenant(db_sessions)


def new_queue(aws: Any, name: str, **attributes: str) -> tuple[str, str]:
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def received(aws: Any, url: str) -> list[dict[str, Any]]:
    answer = aws.client("sqs").receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
    )
    return list(answer.get("Messages", []))


def fire_once(
    world: tuple[TaskService, LocalEngine, str],
    clock: FrozenClock,
    target: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """Create a one-time task due in a minute, let the engine fire it, return the task."""
    tasks, engine, tenant = world
    task, _ = tasks.create(
        tenant,
        {
            "name": "nightly report",
            "schedule": {"kind": "once", "at": "2026-11-23T05:01:00Z"},
            "target": target,
            **extra,
        },
    )
    clock.now = datetime(2026, 11, 23, 5, 1, 0, 200000, tzinfo=UTC)
    engine.run_once()
    return task


def executions(sessions: sessionmaker[Session], task_id: str) -> list[Execution]:
    with sessions() as session:
        query = select(Execution).where(Execution.task_id == task_id).order_by(Execution.attempt)
        return list(session.scalars(query))


def test_a_message_lands_in_the_sqs_queue_rendered(
    aws: Any, world: Any, clock: FrozenClock, db_sessions: sessionmaker[Session]
) -> None:
    url, arn = new_queue(aws, "jobs")
    message = "{{task.name}} / {{task.id}} / {{scheduled_time}} / try {{attempt}}"
    task = fire_once(world, clock, {"type": "sqs", "queue_arn": arn, "message": message})
    bodies = [m["Body"] for m in received(aws, url)]
    assert bodies == [f"nightly report / {task['id']} / 2026-11-23T05:01:00Z / try 1"]
    [execution] = executions(db_sessions, task["id"])
    assert (execution.status, execution.attempt) == ("success", 1)
    assert execution.scheduled_time == datetime(2026, 11, 23, 5, 1, tzinfo=UTC)


def test_a_fifo_queue_gets_the_message_group_id(
    aws: Any, world: Any, clock: FrozenClock, db_sessions: sessionmaker[Session]
) -> None:
    url, arn = new_queue(aws, "jobs.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    target = {"type": "sqs", "queue_arn": arn, "message": {"k": 1}, "message_group_id": "g-1"}
    fire_once(world, clock, target)
    [message] = received(aws, url)
    assert json.loads(message["Body"]) == {"k": 1}
    assert message["Attributes"]["MessageGroupId"] == "g-1"


def test_the_sns_topic_receives(
    aws: Any, world: Any, clock: FrozenClock, db_sessions: sessionmaker[Session]
) -> None:
    url, queue_arn = new_queue(aws, "topic-inbox")
    sns = aws.client("sns")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    plain = fire_once(
        world, clock, {"type": "sns", "topic_arn": topic, "message": {"task": "{{task.id}}"}}
    )
    [note] = [json.loads(m["Body"]) for m in received(aws, url)]
    assert json.loads(note["Message"]) == {"task": plain["id"]}
    assert [e.status for e in executions(db_sessions, plain["id"])] == ["success"]


def test_an_sns_subject_is_published_with_the_message(
    aws: Any, world: Any, clock: FrozenClock
) -> None:
    url, queue_arn = new_queue(aws, "subject-inbox")
    sns = aws.client("sns")
    topic = sns.create_topic(Name="titled")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    fire_once(world, clock, {"type": "sns", "topic_arn": topic, "message": "hi", "subject": "Due"})
    [note] = [json.loads(m["Body"]) for m in received(aws, url)]
    assert (note["Message"], note["Subject"]) == ("hi", "Due")


def test_an_event_is_put_on_the_bus(
    aws: Any, world: Any, clock: FrozenClock, db_sessions: sessionmaker[Session]
) -> None:
    url, queue_arn = new_queue(aws, "bus-inbox")
    events = aws.client("events")
    bus = events.create_event_bus(Name="reports")["EventBusArn"]
    events.put_rule(
        Name="to-inbox",
        EventBusName="reports",
        EventPattern=json.dumps({"source": ["com.example.reports"]}),
    )
    events.put_targets(
        Rule="to-inbox", EventBusName="reports", Targets=[{"Id": "inbox", "Arn": queue_arn}]
    )
    target = {
        "type": "eventbridge",
        "event_bus_arn": bus,
        "detail_type": "report.due",
        "source": "com.example.reports",
        "detail": {"task": "{{task.id}}", "attempt": "{{attempt}}"},
    }
    task = fire_once(world, clock, target)
    [event] = [json.loads(m["Body"]) for m in received(aws, url)]
    assert event["detail-type"] == "report.due"
    assert event["source"] == "com.example.reports"
    assert event["detail"] == {"task": task["id"], "attempt": "1"}
    assert [e.status for e in executions(db_sessions, task["id"])] == ["success"]


def test_the_lambda_is_invoked_asynchronously_with_the_payload(
    aws: Any,
    world: Any,
    clock: FrozenClock,
    db_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.awslambda_simple.models import LambdaSimpleBackend

    calls: list[tuple[str, Any, str | None]] = []
    real = LambdaSimpleBackend.invoke

    def spy(self: Any, name: str, qualifier: Any, body: Any, headers: Any, out: Any) -> Any:
        calls.append((name, body, headers.get("x-amz-invocation-type")))
        return real(self, name, qualifier, body, headers, out)

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", spy)
    role = aws.client("iam").create_role(
        RoleName="worker-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handle(event, context):\n    return event\n")
    function = aws.client("lambda").create_function(
        FunctionName="worker",
        Runtime="python3.12",
        Role=role,
        Handler="handler.handle",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]
    payload = {"job": "{{task.id}}", "at": "{{scheduled_time}}"}
    task = fire_once(world, clock, {"type": "lambda", "function_arn": function, "payload": payload})
    assert len(calls) == 1
    name, body, invocation_type = calls[0]
    assert name.endswith("worker") and invocation_type == "Event"
    assert json.loads(body) == {"job": task["id"], "at": "2026-11-23T05:01:00Z"}
    assert [e.status for e in executions(db_sessions, task["id"])] == ["success"]


def test_a_refused_delivery_fails_with_the_aws_error_and_is_retried(
    aws: Any, world: Any, clock: FrozenClock, db_sessions: sessionmaker[Session]
) -> None:
    missing = f"arn:aws:sqs:{REGION}:{ACCOUNT}:no-such-queue"
    task = fire_once(
        world,
        clock,
        {"type": "sqs", "queue_arn": missing, "message": "attempt {{attempt}}"},
        retry={"max_attempts": 2, "base_delay_seconds": 1, "max_delay_seconds": 1},
    )
    [first] = executions(db_sessions, task["id"])
    assert first.status == "failed"
    assert first.error_kind == "aws_error"
    assert first.error is not None and "NonExistentQueue" in first.error
    assert first.retry_at is not None
    # The queue appears; the retry (attempt 2 of the same occurrence) gets through.
    url, _ = new_queue(aws, "no-such-queue")
    clock.now = first.retry_at + timedelta(seconds=1)
    world[1].run_once()
    second = executions(db_sessions, task["id"])[1]
    assert (second.attempt, second.status) == (2, "success")
    assert second.scheduled_time == first.scheduled_time
    assert [m["Body"] for m in received(aws, url)] == ["attempt 2"]


def test_run_now_delivers_a_direct_target_as_its_own_occurrence(
    aws: Any, world: Any, clock: FrozenClock, db_sessions: sessionmaker[Session]
) -> None:
    url, arn = new_queue(aws, "run-now")
    tasks, engine, tenant = world
    task, _ = tasks.create(
        tenant,
        {
            "name": "on demand",
            "schedule": {"kind": "daily", "time": "09:00"},
            "target": {"type": "sqs", "queue_arn": arn, "message": "{{scheduled_time}}"},
        },
    )
    invoker = ThreadInvoker(engine.delivery)  # the local run-now path
    history = HistoryService(db_sessions, invoker, clock=clock)
    history.run_now(tenant, task["id"])
    invoker.drain()
    invoker.close()
    [execution] = executions(db_sessions, task["id"])
    assert (execution.status, execution.trigger) == ("success", "manual")
    [body] = [m["Body"] for m in received(aws, url)]
    assert body.startswith("2026-11-23T05:00:00.")  # the manual occurrence, to the microsecond


def test_run_now_on_aws_sends_a_direct_target_from_the_api_and_records_it(
    aws: Any, world: Any, clock: FrozenClock, db_sessions: sessionmaker[Session]
) -> None:
    url, arn = new_queue(aws, "run-now-aws")
    tasks, engine, tenant = world
    task, _ = tasks.create(
        tenant,
        {
            "name": "on demand",
            "schedule": {"kind": "daily", "time": "09:00"},
            "target": {"type": "sqs", "queue_arn": arn, "message": "now"},
        },
    )
    proxy = LambdaInvoker("arn:aws:lambda:us-east-1:123456789012:function:absent-proxy")
    invoker = DirectRunInvoker(proxy, engine.delivery.recorder)
    HistoryService(db_sessions, invoker, clock=clock).run_now(tenant, task["id"])
    assert [m["Body"] for m in received(aws, url)] == ["now"]
    assert [e.status for e in executions(db_sessions, task["id"])] == ["success"]
