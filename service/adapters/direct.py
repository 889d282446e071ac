"""Direct targets delivered from this process through boto3, as EventBridge Scheduler delivers
them on AWS: SQS SendMessage, SNS Publish, EventBridge PutEvents, Lambda Invoke (Event).

The local engine and run-now hand over one of two event shapes:
- a fired local schedule with its own target (`local.wrap_direct`): the rendered Input, the
  target's ARN and parameters, and the context attributes (filled by the engine);
- the Timebridge document a run-now builds (`schedule_input`), whose target is a direct type:
  the Input is rendered here, with the occurrence's own time and attempt.

The answer is an outcome record in the proxy's format, so the recorder treats both alike:
`success` when the AWS call accepted the message, `failed` with the AWS error otherwise (then
retried through the task's retry policy). boto3 is imported on first use.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.domain import executions as states
from service.domain import targets
from service.domain.provisioning import ScheduleTarget, retry_occurrence, task_id_for


class UnreadableEvent(ValueError):
    """The event names no occurrence or target this module can deliver."""


@dataclass(frozen=True)
class DirectRequest:
    target: ScheduleTarget
    input: str
    task_id: str
    tenant_id: str | None
    scheduled_time: datetime
    attempt: int
    schedule_arn: str | None
    delivery_attempt: int


def is_direct_event(event: Mapping[str, Any]) -> bool:
    """True when the event is for a target the scheduler delivers itself (not the proxy)."""
    if "direct_target" in event:
        return True
    target = event.get("target")
    return isinstance(target, Mapping) and targets.is_direct(target)


def direct_request(event: Mapping[str, Any]) -> DirectRequest:
    """What to send where, and the occurrence it belongs to. Raises UnreadableEvent."""
    try:
        if "direct_target" in event:
            return _from_fired_schedule(event)
        return _from_document(event)
    except (KeyError, TypeError, ValueError) as exc:
        raise UnreadableEvent(f"not a direct-target event: {exc}") from None


def _from_fired_schedule(event: Mapping[str, Any]) -> DirectRequest:
    spec = event["direct_target"]
    schedule_arn = str(event["schedule_arn"])
    name = schedule_arn.rsplit("/", 1)[-1]
    task_id = task_id_for(name)
    if task_id is None:
        raise ValueError(f"schedule {name!r} belongs to no task")
    # A retry schedule's name holds its occurrence and attempt; a task's own schedule fires
    # attempt 1 of the occurrence it fires for.
    retry = retry_occurrence(name)
    scheduled, attempt = retry or (states.parse_utc(str(event["scheduled_time"])), 1)
    return DirectRequest(
        target=ScheduleTarget(
            arn=str(spec["arn"]),
            message_group_id=spec.get("message_group_id"),
            detail_type=spec.get("detail_type"),
            source=spec.get("source"),
        ),
        input=str(event["input"]),
        task_id=task_id,
        tenant_id=None,
        scheduled_time=scheduled,
        attempt=attempt,
        schedule_arn=schedule_arn,
        delivery_attempt=int(event.get("attempt_number") or 1),
    )


def _from_document(event: Mapping[str, Any]) -> DirectRequest:
    context = event.get("context") or {}
    scheduled_text = str(context["scheduled_time"])
    attempt = int(event["attempt"])
    template = event.get("template") or {}
    target, input_text = targets.direct_schedule(
        event["target"],
        task_id=str(event["task_id"]),
        task_name=str(template.get("task_name") or ""),
        scheduled_time=scheduled_text,
        attempt=attempt,
    )
    tenant = event.get("tenant_id")
    return DirectRequest(
        target=target,
        input=input_text,
        task_id=str(event["task_id"]),
        tenant_id=tenant if isinstance(tenant, str) else None,
        scheduled_time=states.parse_utc(scheduled_text),
        attempt=attempt,
        schedule_arn=context.get("schedule_arn"),
        delivery_attempt=int(context.get("attempt_number") or 1),
    )


class DeliveryRefused(Exception):
    """The AWS service did not accept the message; `code` is its error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class AwsTargetDelivery:
    """Send direct targets through boto3 clients (one per service, made on first use)."""

    def __init__(self, client_factory: Callable[[str], Any] | None = None) -> None:
        self._factory = client_factory or _default_client
        self._clients: dict[str, Any] = {}
        self._queue_urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._factory(service)
            return self._clients[service]

    def call(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Deliver one direct-target event; the outcome record in the proxy's format."""
        request = direct_request(event)
        started = datetime.now(UTC)
        clock = time.monotonic()
        record: dict[str, Any] = {
            "occurrence_key": states.occurrence_key(
                request.task_id, request.scheduled_time, request.attempt
            ),
            "tenant_id": request.tenant_id,
            "schedule_arn": request.schedule_arn,
            "delivery_attempt": request.delivery_attempt,
            "started_at": started.isoformat().replace("+00:00", "Z"),
        }
        try:
            self.send(request.target, request.input)
        except DeliveryRefused as exc:
            record.update(status=states.FAILED, error_kind="aws_error", error=str(exc)[:2000])
        except Exception as exc:  # unreachable endpoint, bad credentials, malformed Input
            kind = type(exc).__name__
            error = f"{kind}: {exc}"[:2000]
            record.update(status=states.FAILED, error_kind="aws_unreachable", error=error)
        else:
            record["status"] = states.SUCCESS
        record["latency_ms"] = int((time.monotonic() - clock) * 1000)
        return record

    def send(self, target: ScheduleTarget, input_text: str) -> None:
        """One AWS call for the target's ARN; DeliveryRefused when the service refuses it."""
        from botocore.exceptions import ClientError

        try:
            self._send(target, input_text)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise DeliveryRefused(
                str(error.get("Code") or "ClientError"), str(error.get("Message") or exc)
            ) from None

    def _send(self, target: ScheduleTarget, input_text: str) -> None:
        if target.arn == targets.SNS_PUBLISH_ARN:
            self.client("sns").publish(**json.loads(input_text))
            return
        parts = target.arn.split(":", 5)
        if len(parts) != 6:
            raise DeliveryRefused("ValidationException", f"{target.arn} is not an ARN")
        service, account, resource = parts[2], parts[4], parts[5]
        if service == "sqs":
            request: dict[str, Any] = {
                "QueueUrl": self._queue_url(resource, account),
                "MessageBody": input_text,
            }
            if target.message_group_id is not None:
                request["MessageGroupId"] = target.message_group_id
            self.client("sqs").send_message(**request)
        elif service == "sns":
            self.client("sns").publish(TopicArn=target.arn, Message=input_text)
        elif service == "events":
            answer = self.client("events").put_events(
                Entries=[
                    {
                        "EventBusName": target.arn,
                        "DetailType": target.detail_type,
                        "Source": target.source,
                        "Detail": input_text,
                    }
                ]
            )
            if answer.get("FailedEntryCount"):
                entry = (answer.get("Entries") or [{}])[0]
                raise DeliveryRefused(
                    str(entry.get("ErrorCode") or "PutEventsFailed"),
                    str(entry.get("ErrorMessage") or "the event was not put on the bus"),
                )
        elif service == "lambda":
            self.client("lambda").invoke(
                FunctionName=target.arn, InvocationType="Event", Payload=input_text.encode()
            )
        else:
            raise DeliveryRefused("ValidationException", f"no delivery for {service} targets")

    def _queue_url(self, name: str, account: str) -> str:
        key = f"{account}:{name}"
        url = self._queue_urls.get(key)
        if url is None:
            sqs = self.client("sqs")
            answer = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            url = self._queue_urls[key] = str(answer["QueueUrl"])
        return url


def _default_client(service: str) -> Any:
    """A boto3 client; region, endpoint and credentials come from the usual AWS settings."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20
    )
    return boto3.client(service, config=config)
