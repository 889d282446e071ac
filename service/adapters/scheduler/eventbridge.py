"""The `eventbridge` backend: one EventBridge Scheduler schedule per task, through boto3.

boto3 is imported lazily (it costs ~300 ms of cold start). The client uses botocore's adaptive
retry mode, so throttling is first absorbed by client-side rate limiting; what still fails is
mapped to the project's errors. moto validates nothing, so callers validate before calling.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from service.domain.errors import (
    Conflict,
    InvalidSchedule,
    NotFound,
    TimebridgeError,
    UpstreamThrottled,
    UpstreamUnavailable,
)
from service.domain.provisioning import (
    SCHEDULE_NAME_PREFIX,
    ScheduleDefinition,
    ScheduleInfo,
    ScheduleSummary,
    ScheduleTarget,
)

# Delivery retries stay with EventBridge (the proxy's own retries are Timebridge's, see DESIGN).
DEFAULT_RETRY_POLICY = {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}
# Set from the task's target on every write, so an update never keeps stale ones.
MANAGED_TARGET_PARAMETERS = frozenset({"SqsParameters", "EventBridgeParameters"})


def make_scheduler_client(max_attempts: int = 10) -> Any:
    """A boto3 `scheduler` client; region and endpoint come from the usual AWS variables."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=20,
    )
    return boto3.client("scheduler", config=config)


def _direct_target_fields(target: ScheduleTarget | None) -> dict[str, Any]:
    """Target fields for a resource the scheduler delivers to itself (no proxy hop): its ARN,
    and the templated target's parameters (SQS FIFO group, EventBridge detail type and source).
    The role, Input, retry policy and dead-letter queue stay as for the proxy."""
    if target is None:
        return {}
    fields: dict[str, Any] = {"Arn": target.arn}
    if target.message_group_id is not None:
        fields["SqsParameters"] = {"MessageGroupId": target.message_group_id}
    if target.detail_type is not None or target.source is not None:
        fields["EventBridgeParameters"] = {
            "DetailType": target.detail_type,
            "Source": target.source,
        }
    return fields


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _map_error(exc: Exception, name: str) -> TimebridgeError:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code in ("ThrottlingException", "TooManyRequestsException"):
            return UpstreamThrottled(f"EventBridge Scheduler throttled {name}: {message}")
        if code == "ValidationException":
            return InvalidSchedule("schedule", f"EventBridge Scheduler refused it: {message}")
        if code == "ConflictException":
            return Conflict(f"schedule {name}: {message}")
        if code == "ResourceNotFoundException":
            return NotFound(f"schedule {name} does not exist")
        return UpstreamUnavailable(f"EventBridge Scheduler failed ({code}): {message}")
    if isinstance(exc, BotoCoreError):
        return UpstreamUnavailable(f"EventBridge Scheduler unreachable: {exc}")
    raise exc


class EventBridgeSchedulerBackend:
    """SchedulerBackend over EventBridge Scheduler, every schedule in one group."""

    def __init__(
        self,
        *,
        group: str,
        target_arn: str,
        role_arn: str,
        kms_key_arn: str | None = None,
        dead_letter_arn: str | None = None,
        client: Any = None,
    ) -> None:
        self._group = group
        self._target_arn = target_arn
        self._role_arn = role_arn
        self._kms_key_arn = kms_key_arn
        # Invocations EventBridge Scheduler could not make (after its own retries) land here;
        # the recorder reads them back as trigger_failed executions.
        self._dead_letter_arn = dead_letter_arn
        self._client = client if client is not None else make_scheduler_client()

    def _request(self, definition: ScheduleDefinition) -> dict[str, Any]:
        request: dict[str, Any] = {
            "Name": definition.name,
            "GroupName": self._group,
            "ScheduleExpression": definition.expression,
            "ScheduleExpressionTimezone": definition.expression_timezone,
            "FlexibleTimeWindow": (
                {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": definition.flexible_window_minutes}
                if definition.flexible_window_minutes
                else {"Mode": "OFF"}
            ),
            "Target": {
                "Arn": self._target_arn,
                "RoleArn": self._role_arn,
                "Input": definition.input,
                "RetryPolicy": dict(DEFAULT_RETRY_POLICY),
                **(
                    {"DeadLetterConfig": {"Arn": self._dead_letter_arn}}
                    if self._dead_letter_arn
                    else {}
                ),
                **_direct_target_fields(definition.target),
            },
            "State": "ENABLED" if definition.enabled else "DISABLED",
            "ActionAfterCompletion": "DELETE" if definition.delete_after_completion else "NONE",
            "Description": definition.description[:512],
        }
        if definition.start is not None:
            request["StartDate"] = definition.start
        if definition.end is not None:
            request["EndDate"] = definition.end
        if self._kms_key_arn:
            request["KmsKeyArn"] = self._kms_key_arn
        return request

    def create(self, definition: ScheduleDefinition, *, client_token: str) -> str:
        request = self._request(definition) | {"ClientToken": client_token}
        response = self._call(definition.name, "create_schedule", **request)
        return str(response.get("ScheduleArn") or self._arn(definition.name))

    def get(self, name: str) -> ScheduleInfo | None:
        raw = self._get_raw(name)
        if raw is None:
            return None
        window = raw.get("FlexibleTimeWindow") or {}
        target = raw.get("Target") or {}
        definition = ScheduleDefinition(
            name=name,
            expression=raw.get("ScheduleExpression", ""),
            expression_timezone=raw.get("ScheduleExpressionTimezone") or "UTC",
            input=target.get("Input", ""),
            enabled=raw.get("State", "ENABLED") == "ENABLED",
            start=_utc(raw.get("StartDate")),
            end=_utc(raw.get("EndDate")),
            flexible_window_minutes=(
                window.get("MaximumWindowInMinutes") if window.get("Mode") == "FLEXIBLE" else None
            ),
            delete_after_completion=raw.get("ActionAfterCompletion") == "DELETE",
            description=raw.get("Description") or "",
            target=self._direct_target_of(target),
        )
        return ScheduleInfo(definition, str(raw.get("Arn") or self._arn(name)))

    def _direct_target_of(self, target: dict[str, Any]) -> ScheduleTarget | None:
        """The schedule's own target as the domain states it (None: the proxy Lambda)."""
        arn = target.get("Arn")
        if not arn or arn == self._target_arn:
            return None
        sqs = target.get("SqsParameters") or {}
        events = target.get("EventBridgeParameters") or {}
        return ScheduleTarget(
            arn=str(arn),
            message_group_id=sqs.get("MessageGroupId"),
            detail_type=events.get("DetailType"),
            source=events.get("Source"),
        )

    def _call(self, name: str, operation: str, **request: Any) -> dict[str, Any]:
        """One Scheduler API call, its failures mapped to the project's errors."""
        try:
            response: dict[str, Any] = getattr(self._client, operation)(**request)
        except Exception as exc:
            raise _map_error(exc, name) from exc
        return response

    def _get_raw(self, name: str) -> dict[str, Any] | None:
        try:
            return self._call(name, "get_schedule", Name=name, GroupName=self._group)
        except NotFound:
            return None

    def update(self, definition: ScheduleDefinition) -> str:
        # UpdateSchedule replaces the whole schedule: read it, keep what we do not manage
        # (a dead-letter queue, a custom retry policy), and send every field back.
        current = self._get_raw(definition.name)
        if current is None:
            raise NotFound(f"schedule {definition.name} does not exist")
        request = self._request(definition)
        kept = {
            k: v
            for k, v in (current.get("Target") or {}).items()
            if k not in request["Target"] and k not in MANAGED_TARGET_PARAMETERS
        }
        request["Target"] = {**kept, **request["Target"]}
        if "RetryPolicy" in (current.get("Target") or {}):
            request["Target"]["RetryPolicy"] = current["Target"]["RetryPolicy"]
        response = self._call(definition.name, "update_schedule", **request)
        return str(response.get("ScheduleArn") or self._arn(definition.name))

    def delete(self, name: str) -> bool:
        try:
            self._call(name, "delete_schedule", Name=name, GroupName=self._group)
        except NotFound:
            return False
        return True

    def list(self) -> Iterator[ScheduleSummary]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"GroupName": self._group, "NamePrefix": SCHEDULE_NAME_PREFIX}
            if token:
                kwargs["NextToken"] = token
            page = self._call("(list)", "list_schedules", **kwargs)
            for item in page.get("Schedules", []):
                yield ScheduleSummary(
                    name=item["Name"],
                    arn=item.get("Arn") or self._arn(item["Name"]),
                    enabled=item.get("State", "ENABLED") == "ENABLED",
                )
            token = page.get("NextToken")
            if not token:
                return

    def _arn(self, name: str) -> str:
        region = getattr(getattr(self._client, "meta", None), "region_name", None) or "unknown"
        return f"arn:aws:scheduler:{region}:000000000000:schedule/{self._group}/{name}"
