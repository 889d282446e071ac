"""Request templating (issue "Targets beyond HTTP", item 3; SEEDS S0-03): placeholders for the
occurrence context in bodies, query and headers, filled by the proxy at call time; unknown ones
refused when the task is created."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy_lambda.handler import handle
from proxy_lambda.signing import make_callback_token, parse_signing_secrets
from proxy_lambda.template import placeholders_in, render, render_text
from service.domain.errors import InvalidRequest
from service.domain.tasks import (
    CONTEXT_ATTRIBUTES,
    check_placeholders,
    normalize_callback,
    normalize_target,
    schedule_input,
)
from tests.proxy.test_proxy import (
    ARN,
    PUBLIC_URL,
    SCHEDULED,
    SECRET,
    TASK_ID,
    RecordingSender,
    secret_settings,
)

CONTEXT = {
    "task.id": "t-1",
    "task.name": 'report "daily"',
    "scheduled_time": "2026-11-23T00:00:00Z",
    "scheduled_time_local": "2026-11-23T09:00:00+09:00",
    "attempt": 2,
    "occurrence_key": "t-1:2026-11-23T00:00:00Z:2",
    "callback_url": "https://tb.example/v1/callbacks/abc",
}


def test_every_placeholder_renders_typed_and_escaped() -> None:
    body = {
        "task": "{{task.id}}",
        "name": "{{ task.name }}",
        "when": "{{scheduled_time}}",
        "local": "{{scheduled_time_local}}",
        "attempt": "{{attempt}}",
        "label": "attempt {{attempt}} of {{task.name}}",
        "key": "{{occurrence_key}}",
        "reply_to": "{{callback_url}}",
        "nested": [{"n": "{{attempt}}"}, 3, None, True],
        "literal": "{{{{not a placeholder}}}}",
    }
    rendered = render(body, CONTEXT)
    assert rendered == {
        "task": "t-1",
        "name": 'report "daily"',
        "when": "2026-11-23T00:00:00Z",
        "local": "2026-11-23T09:00:00+09:00",
        "attempt": 2,
        "label": 'attempt 2 of report "daily"',
        "key": "t-1:2026-11-23T00:00:00Z:2",
        "reply_to": "https://tb.example/v1/callbacks/abc",
        "nested": [{"n": 2}, 3, None, True],
        "literal": "{{not a placeholder}}",
    }
    assert json.loads(json.dumps(rendered)) == rendered  # quotes escaped by serialization
    assert render_text("run-{{attempt}}", CONTEXT) == "run-2"
    assert placeholders_in(body) == set(CONTEXT)
    with pytest.raises(KeyError):
        render("{{nope}}", CONTEXT)


def test_unknown_placeholders_and_a_callback_url_without_callbacks_are_refused() -> None:
    target = normalize_target({"url": "https://svc.internal/x", "body": {"a": "{{task.nmae}}"}})
    with pytest.raises(InvalidRequest) as refused:
        check_placeholders(target, normalize_callback(None))
    assert refused.value.field == "target.body" and "task.nmae" in refused.value.reason
    needs = normalize_target(
        {"url": "https://svc.internal/x", "headers": {"X-Cb": "{{callback_url}}"}}
    )
    with pytest.raises(InvalidRequest, match=r"callback\.enabled"):
        check_placeholders(needs, normalize_callback(None))
    check_placeholders(needs, normalize_callback({"enabled": True}))


def fired(target: dict[str, Any], *, callback: bool) -> dict[str, Any]:
    text = schedule_input(
        task_id=TASK_ID,
        tenant_id="default",
        target=normalize_target(target),
        callback=normalize_callback({"enabled": callback}),
        attempt=2,
        task_name="nightly",
        timezone="Asia/Seoul",
    )
    values = {
        "schedule_arn": ARN,
        "scheduled_time": SCHEDULED,
        "execution_id": "e-1",
        "attempt_number": "1",
    }
    for name, placeholder in CONTEXT_ATTRIBUTES.items():
        text = text.replace(placeholder, values[name])
    event: dict[str, Any] = json.loads(text)
    return event


def test_the_proxy_fills_the_body_query_and_headers_at_call_time() -> None:
    sender = RecordingSender()
    event = fired(
        {
            "url": "https://hooks.example.com/run",
            "query": {"attempt": "{{attempt}}"},
            "headers": {"X-Occurrence": "{{occurrence_key}}"},
            "body": {
                "task": "{{task.name}}",
                "local": "{{scheduled_time_local}}",
                "reply_to": "{{callback_url}}",
            },
        },
        callback=True,
    )
    outcome = handle(
        event,
        send=sender,
        settings=secret_settings(ALLOWED_TARGET_HOSTS="hooks.example.com"),
        resolve=lambda host, port: ["203.0.113.7"],
    )
    assert outcome["status"] == "success", outcome
    (request,) = sender.requests
    body = json.loads(request.body or b"")
    key = f"{TASK_ID}:{SCHEDULED}:2"
    token = make_callback_token(key, parse_signing_secrets(SECRET))
    assert body == {
        "task": "nightly",
        "local": "2026-11-23T18:00:00+09:00",
        "reply_to": f"{PUBLIC_URL}/v1/callbacks/{token}",
    }
    assert body["reply_to"] == request.headers["Timebridge-Callback-Url"]
    assert request.headers["X-Occurrence"] == key
    assert request.target.endswith("?attempt=2")
