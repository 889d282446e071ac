"""Direct targets: AWS resources EventBridge Scheduler delivers to itself, with no proxy hop
(SEEDS S0-01, S2-03, C-12). Standard library only.

A target is a discriminated union on `type`. `http` (the default) is validated in
`service.domain.tasks`; every other type is one entry of `DIRECT_TYPES`, which maps the type to
its normalizer, so one more member (e.g. `event`, Timebridge's own topics) is one more entry.

For a direct target the schedule's Input is the rendered payload itself. Placeholders (S0-03):
`{{task.id}}` and `{{task.name}}` are known when the schedule is written and substituted then;
`{{scheduled_time}}` and `{{attempt}}` become EventBridge Scheduler's context attributes
`<aws.scheduler.scheduled-time>` and `<aws.scheduler.attempt-number>`, which it fills at fire
time (the local engine fills the same names). Every value is substituted as text. The others
(`{{callback_url}}`, `{{scheduled_time_local}}`, `{{occurrence_key}}`) need the proxy and are
refused for direct targets: EventBridge has no attribute for them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy_lambda.template import NAMES as TEMPLATE_NAMES
from proxy_lambda.template import placeholders_in, render
from service.domain.errors import InvalidRequest
from service.domain.provisioning import ScheduleTarget

MAX_INPUT_BYTES = 256 * 1024  # EventBridge Scheduler's Input limit (also SQS/SNS/PutEvents')
SCHEDULED_TIME_ATTRIBUTE = "<aws.scheduler.scheduled-time>"
ATTEMPT_ATTRIBUTE = "<aws.scheduler.attempt-number>"
DIRECT_PLACEHOLDERS = frozenset({"task.id", "task.name", "scheduled_time", "attempt"})

_PARTITION = r"aws(?:-[a-z]+)*"
_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}"
_ACCOUNT = r"\d{12}"
# service in the ARN, and the resource part each target type accepts
_RESOURCES: dict[str, tuple[str, str, str]] = {
    "lambda": (
        "lambda",
        r"function:[A-Za-z0-9_-]{1,64}(?::(?:\$LATEST|[A-Za-z0-9_-]{1,128}))?",
        "arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]",
    ),
    "sqs": (
        "sqs",
        r"[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo",
        "arn:aws:sqs:<region>:<account>:<queue>",
    ),
    "sns": ("sns", r"[A-Za-z0-9_-]{1,256}(?:\.fifo)?", "arn:aws:sns:<region>:<account>:<topic>"),
    "eventbridge": (
        "events",
        r"event-bus/[A-Za-z0-9/._-]{1,256}",
        "arn:aws:events:<region>:<account>:event-bus/<name>",
    ),
}
_SQS_GROUP_ID = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str


NO_TARGETS = "none"  # the allow-list value that refuses every direct target


@dataclass(frozen=True)
class TargetPolicy:
    """What the deployment's scheduler role may reach: `region` (None: not checked), whether
    other regions are allowed, and ARN patterns (`*` matches anything; empty: everything;
    just `none`: nothing)."""

    region: str | None = None
    allow_cross_region: bool = False
    allowed_arns: tuple[str, ...] = ()


def parse_arn(kind: str, field: str, value: Any) -> Arn:
    """The ARN of a `kind` target; InvalidRequest naming `field` when it is not one."""
    service, resource, shape = _RESOURCES[kind]
    if not isinstance(value, str) or not value:
        raise InvalidRequest(field, f"is required: {shape}")
    pattern = rf"arn:({_PARTITION}):{service}:({_REGION}):({_ACCOUNT}):({resource})"
    match = re.fullmatch(pattern, value)
    if match is None:
        raise InvalidRequest(field, f"{value[:200]!r} is not a {kind} ARN ({shape})")
    return Arn(match.group(1), service, match.group(2), match.group(3), match.group(4))


def target_arn(target: Mapping[str, Any]) -> str | None:
    """The resource ARN of a direct target (None for http and unknown types)."""
    field = _ARN_FIELDS.get(str(target.get("type", "http")))
    return None if field is None else str(target[field])


def is_direct(target: Mapping[str, Any]) -> bool:
    return str(target.get("type", "http")) in DIRECT_TYPES


def check_reach(target: Mapping[str, Any], policy: TargetPolicy) -> None:
    """Refuse a direct target outside the deployment's region (unless allowed) or outside the
    ARNs its scheduler role may reach; InvalidRequest names the ARN field."""
    kind = str(target.get("type", "http"))
    field = _ARN_FIELDS.get(kind)
    if field is None:
        return
    arn = parse_arn(kind, f"target.{field}", target.get(field))
    if policy.region and not policy.allow_cross_region and arn.region != policy.region:
        raise InvalidRequest(
            f"target.{field}",
            f"is in {arn.region}, this deployment runs in {policy.region}; cross-region targets "
            "are off (TIMEBRIDGE_ALLOW_CROSS_REGION_TARGETS)",
        )
    value = str(target[field])
    if policy.allowed_arns == (NO_TARGETS,):
        raise InvalidRequest(
            f"target.{field}",
            "the deployment's scheduler role cannot reach any direct target "
            "(TIMEBRIDGE_ALLOWED_TARGET_ARNS is 'none'; infra: context allowedTargetArns)",
        )
    if policy.allowed_arns and not any(_glob(p).fullmatch(value) for p in policy.allowed_arns):
        raise InvalidRequest(
            f"target.{field}",
            "the deployment's scheduler role cannot reach this resource: it is not in "
            "TIMEBRIDGE_ALLOWED_TARGET_ARNS",
        )


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


# --- normalizers, one per type -------------------------------------------------------------------


def _only(target: Mapping[str, Any], kind: str, fields: set[str]) -> None:
    unknown = set(target) - fields - {"type"}
    if unknown:
        raise InvalidRequest(f"target.{sorted(unknown)[0]}", f"is not a field of a {kind} target")


def _text(target: Mapping[str, Any], name: str, *, low: int, high: int) -> str:
    value = target.get(name)
    if not isinstance(value, str) or not low <= len(value) <= high or not value.strip():
        raise InvalidRequest(f"target.{name}", f"is required: text of {low}-{high} characters")
    if "{{" in value:
        raise InvalidRequest(f"target.{name}", "takes no placeholders")
    return value


def _message(target: Mapping[str, Any], name: str) -> Any:
    """A message is text (sent as it is) or any JSON value (sent serialized)."""
    if name not in target or target[name] is None or target[name] == "":
        raise InvalidRequest(f"target.{name}", "is required: text or JSON")
    value = target[name]
    if isinstance(value, str) and _CONTROL.search(value):
        raise InvalidRequest(f"target.{name}", "holds control characters AWS refuses")
    return value


def _normalize_lambda(target: Mapping[str, Any]) -> dict[str, Any]:
    _only(target, "lambda", {"function_arn", "payload"})
    parse_arn("lambda", "target.function_arn", target.get("function_arn"))
    payload = target.get("payload", {})
    return {"type": "lambda", "function_arn": target["function_arn"], "payload": payload}


def _normalize_sqs(target: Mapping[str, Any]) -> dict[str, Any]:
    _only(target, "sqs", {"queue_arn", "message", "message_group_id"})
    arn = parse_arn("sqs", "target.queue_arn", target.get("queue_arn"))
    out = {"type": "sqs", "queue_arn": target["queue_arn"], "message": _message(target, "message")}
    group = target.get("message_group_id")
    if group is not None:
        if not isinstance(group, str) or not _SQS_GROUP_ID.fullmatch(group):
            raise InvalidRequest(
                "target.message_group_id", "must be 1-128 letters, digits or punctuation"
            )
        out["message_group_id"] = group
    elif arn.resource.endswith(".fifo"):
        raise InvalidRequest("target.message_group_id", "is required for a FIFO (.fifo) queue")
    return out


def _normalize_sns(target: Mapping[str, Any]) -> dict[str, Any]:
    _only(target, "sns", {"topic_arn", "message", "subject"})
    arn = parse_arn("sns", "target.topic_arn", target.get("topic_arn"))
    if arn.resource.endswith(".fifo"):
        # EventBridge Scheduler's SNS target carries no message group id.
        raise InvalidRequest("target.topic_arn", "FIFO topics need a message group id; use sqs")
    out = {"type": "sns", "topic_arn": target["topic_arn"], "message": _message(target, "message")}
    subject = target.get("subject")
    if subject is not None:
        if (
            not isinstance(subject, str)
            or not 1 <= len(subject) <= 100
            or subject.startswith(" ")
            or any(not 32 <= ord(c) < 127 for c in subject)
        ):
            raise InvalidRequest(
                "target.subject",
                "must be 1-100 printable ASCII characters, no line breaks, not starting with "
                "a space",
            )
        out["subject"] = subject
    return out


def _normalize_eventbridge(target: Mapping[str, Any]) -> dict[str, Any]:
    _only(target, "eventbridge", {"event_bus_arn", "detail_type", "source", "detail"})
    parse_arn("eventbridge", "target.event_bus_arn", target.get("event_bus_arn"))
    detail_type = _text(target, "detail_type", low=1, high=128)
    source = _text(target, "source", low=1, high=256)
    if source.startswith("aws."):
        raise InvalidRequest("target.source", "must not start with 'aws.' (reserved by AWS)")
    detail = target.get("detail", {})
    if not isinstance(detail, Mapping):
        raise InvalidRequest("target.detail", "must be a JSON object")
    return {
        "type": "eventbridge",
        "event_bus_arn": target["event_bus_arn"],
        "detail_type": detail_type,
        "source": source,
        "detail": dict(detail),
    }


Normalizer = Callable[[Mapping[str, Any]], dict[str, Any]]
# The union's members besides `http`; each names its ARN field and its templated field.
DIRECT_TYPES: dict[str, Normalizer] = {
    "lambda": _normalize_lambda,
    "sqs": _normalize_sqs,
    "sns": _normalize_sns,
    "eventbridge": _normalize_eventbridge,
}
_ARN_FIELDS = {
    "lambda": "function_arn",
    "sqs": "queue_arn",
    "sns": "topic_arn",
    "eventbridge": "event_bus_arn",
}
_PAYLOAD_FIELDS = {"lambda": "payload", "sqs": "message", "sns": "message", "eventbridge": "detail"}


def normalize_direct_target(target: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a direct target (type in DIRECT_TYPES) and its placeholders; InvalidRequest
    names the field."""
    kind = str(target.get("type"))
    out = DIRECT_TYPES[kind](target)
    field = _PAYLOAD_FIELDS[kind]
    used = placeholders_in(out.get(field))
    unknown = sorted(used - TEMPLATE_NAMES)
    if unknown:
        raise InvalidRequest(
            f"target.{field}",
            f"unknown placeholder {{{{{unknown[0]}}}}}; known for {kind} targets: "
            + ", ".join(sorted(DIRECT_PLACEHOLDERS)),
        )
    proxy_only = sorted(used - DIRECT_PLACEHOLDERS)
    if proxy_only:
        raise InvalidRequest(
            f"target.{field}",
            f"{{{{{proxy_only[0]}}}}} needs the HTTP proxy; a {kind} target is delivered by "
            "EventBridge Scheduler itself, which can fill only "
            + ", ".join(sorted(DIRECT_PLACEHOLDERS)),
        )
    return out


# --- the schedule's Input ------------------------------------------------------------------------

# EventBridge Scheduler's universal target for SNS Publish: the templated SNS target sends only
# the message, so a subject needs the Publish call's own parameters as Input.
SNS_PUBLISH_ARN = "arn:aws:scheduler:::aws-sdk:sns:publish"


def direct_schedule(
    target: Mapping[str, Any],
    *,
    task_id: str,
    task_name: str,
    scheduled_time: str | None = None,
    attempt: int | None = None,
) -> tuple[ScheduleTarget, str]:
    """The schedule target and Input for a direct target.

    Without `scheduled_time` / `attempt` the Input carries EventBridge's context attributes
    (longer than any value they take, so the size checked here is the worst case); with them
    (a retry of a known occurrence, or a run now) it carries the values. Raises InvalidRequest
    naming the payload field when the Input is over 256 KB."""
    kind = str(target["type"])
    field = _PAYLOAD_FIELDS[kind]
    values = {
        "task.id": task_id,
        "task.name": task_name,
        "scheduled_time": scheduled_time or SCHEDULED_TIME_ATTRIBUTE,
        "attempt": str(attempt) if attempt is not None else ATTEMPT_ATTRIBUTE,
    }
    rendered = render(target.get(field), values)
    # Queues and topics take text as it is; Lambda payloads and event details are JSON.
    as_text = isinstance(rendered, str) and kind in ("sqs", "sns")
    text = rendered if as_text else json.dumps(rendered, separators=(",", ":"))
    arn = str(target[_ARN_FIELDS[kind]])
    if kind == "sns" and target.get("subject"):
        publish = {"TopicArn": arn, "Message": text, "Subject": target["subject"]}
        arn, text = SNS_PUBLISH_ARN, json.dumps(publish, separators=(",", ":"))
    size = len(text.encode())
    if size > MAX_INPUT_BYTES:
        raise InvalidRequest(
            f"target.{field}", f"renders to {size} bytes; AWS allows 256 KB (262144 bytes)"
        )
    return (
        ScheduleTarget(
            arn=arn,
            message_group_id=target.get("message_group_id"),
            detail_type=target.get("detail_type"),
            source=target.get("source"),
        ),
        text,
    )
