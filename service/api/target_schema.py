"""The OpenAPI description of a task's `target`: a union discriminated by `type` (absent means
`http`). Documentation only: the service validates targets in depth (service.domain.tasks and
service.domain.targets) and answers 422 naming the field, so the schema stays permissive about
what the domain checks (ARN shapes, sizes, placeholders). One more member is one more entry."""

from __future__ import annotations

from typing import Any

_TEXT_OR_JSON: dict[str, Any] = {"description": "text sent as it is, or JSON sent serialized"}


def _member(kind: str, required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": f"{kind} target",
        "type": "object",
        "required": ["type", *required],
        "properties": {"type": {"type": "string", "enum": [kind]}, **properties},
    }


HTTP_TARGET: dict[str, Any] = {
    "title": "http target (the default)",
    "type": "object",
    "required": ["url"],
    "properties": {
        "type": {"type": "string", "enum": ["http"], "default": "http"},
        "url": {"type": "string"},
        "method": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "secret_headers": {"type": "array", "items": {"type": "string"}},
        "query": {"type": "object"},
        "body": {},
        "timeout_seconds": {"type": "number"},
    },
}
TARGET_MEMBERS: list[dict[str, Any]] = [
    HTTP_TARGET,
    _member("lambda", ["function_arn"], {"function_arn": {"type": "string"}, "payload": {}}),
    _member(
        "sqs",
        ["queue_arn", "message"],
        {
            "queue_arn": {"type": "string"},
            "message": _TEXT_OR_JSON,
            "message_group_id": {"type": "string", "description": "required for .fifo queues"},
        },
    ),
    _member(
        "sns",
        ["topic_arn", "message"],
        {
            "topic_arn": {"type": "string"},
            "message": _TEXT_OR_JSON,
            "subject": {"type": "string", "maxLength": 100},
        },
    ),
    _member(
        "eventbridge",
        ["event_bus_arn", "detail_type", "source"],
        {
            "event_bus_arn": {"type": "string"},
            "detail_type": {"type": "string", "minLength": 1},
            "source": {"type": "string", "minLength": 1},
            "detail": {"type": "object"},
        },
    ),
    _member(
        "event",
        ["topic"],
        {
            "topic": {"type": "string", "description": "published on the tenant's own topics"},
            "payload": {},
        },
    ),
]
TARGET_SCHEMA: dict[str, Any] = {
    "description": "Where a firing goes; `type` picks the member (absent: http).",
    "anyOf": TARGET_MEMBERS,
}
