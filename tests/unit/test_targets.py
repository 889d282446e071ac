"""Direct targets in the domain (issue "Targets beyond HTTP"; SEEDS S0-01, S2-03, C-12, S0-03):
the union on `type`, per-service ARN checks, the deployment's reach, 256 KB after rendering,
FIFO group ids, SNS subjects, EventBridge details, and which placeholders a target the scheduler
delivers itself can carry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.domain.errors import InvalidRequest
from service.domain.targets import (
    ATTEMPT_ATTRIBUTE,
    SCHEDULED_TIME_ATTRIBUTE,
    SNS_PUBLISH_ARN,
    TargetPolicy,
    check_reach,
    direct_schedule,
)
from service.domain.tasks import normalize_target, redact_target

QUEUE = "arn:aws:sqs:us-east-1:123456789012:jobs"
FIFO = "arn:aws:sqs:us-east-1:123456789012:jobs.fifo"
TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:worker"
BUS = "arn:aws:events:us-east-1:123456789012:event-bus/default"
TASK_ID = "0123abcd-0000-4000-8000-000000000001"

VALID: dict[str, dict[str, Any]] = {
    "lambda": {"type": "lambda", "function_arn": FUNCTION, "payload": {"job": "{{task.id}}"}},
    "sqs": {"type": "sqs", "queue_arn": QUEUE, "message": "run {{task.name}}"},
    "sns": {"type": "sns", "topic_arn": TOPIC, "message": {"at": "{{scheduled_time}}"}},
    "eventbridge": {
        "type": "eventbridge",
        "event_bus_arn": BUS,
        "detail_type": "report.due",
        "source": "com.example.reports",
        "detail": {"attempt": "{{attempt}}"},
    },
}


def refused(target: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        normalize_target(target)
    return caught.value


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_direct_type_is_accepted_and_kept_as_given(kind: str) -> None:
    assert normalize_target(VALID[kind]) == {**VALID[kind]}


def test_http_stays_the_default_type_and_unknown_types_are_named() -> None:
    assert normalize_target({"url": "https://example.com/x"})["type"] == "http"
    error = refused({"type": "queue", "queue_arn": QUEUE})
    assert error.field == "target.type"
    assert "sqs" in error.reason and "eventbridge" in error.reason


@pytest.mark.parametrize(
    ("kind", "field", "arn"),
    [
        ("lambda", "function_arn", "arn:aws:lambda:us-east-1:123456789012:worker"),
        ("lambda", "function_arn", "arn:aws:lambda:us-east-1:12345:function:worker"),
        ("lambda", "function_arn", QUEUE),
        ("sqs", "queue_arn", "arn:aws:sqs:us-east-1:123456789012:bad name"),
        ("sqs", "queue_arn", "arn:aws:sqs:useast1:123456789012:jobs"),
        ("sqs", "queue_arn", "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"),
        ("sns", "topic_arn", "arn:aws:sns:us-east-1:123456789012:"),
        ("sns", "topic_arn", "arn:azure:sns:us-east-1:123456789012:alerts"),
        ("eventbridge", "event_bus_arn", "arn:aws:events:us-east-1:123456789012:rule/x"),
        ("eventbridge", "event_bus_arn", ""),
    ],
)
def test_malformed_arns_are_refused_naming_the_field(kind: str, field: str, arn: str) -> None:
    error = refused({**VALID[kind], field: arn})
    assert error.field == f"target.{field}"


def test_other_partitions_and_qualified_functions_are_arns() -> None:
    normalize_target({**VALID["sqs"], "queue_arn": "arn:aws-cn:sqs:cn-north-1:123456789012:q"})
    normalize_target({**VALID["lambda"], "function_arn": FUNCTION + ":live"})


def test_a_fifo_queue_needs_a_message_group_id() -> None:
    error = refused({**VALID["sqs"], "queue_arn": FIFO})
    assert error.field == "target.message_group_id"
    fifo = normalize_target({**VALID["sqs"], "queue_arn": FIFO, "message_group_id": "reports"})
    assert fifo["message_group_id"] == "reports"
    assert refused({**VALID["sqs"], "message_group_id": ""}).field == "target.message_group_id"


@pytest.mark.parametrize("subject", ["", " leading space", "two\nlines", "x" * 101, "caf\u00e9"])
def test_sns_subjects_follow_sns_limits(subject: str) -> None:
    assert refused({**VALID["sns"], "subject": subject}).field == "target.subject"


def test_sns_fifo_topics_are_refused_since_the_scheduler_sends_no_group_id() -> None:
    error = refused({**VALID["sns"], "topic_arn": TOPIC + ".fifo"})
    assert error.field == "target.topic_arn"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"detail": ["not", "an", "object"]}, "target.detail"),
        ({"detail": "text"}, "target.detail"),
        ({"detail_type": ""}, "target.detail_type"),
        ({"detail_type": "   "}, "target.detail_type"),
        ({"source": ""}, "target.source"),
        ({"source": "aws.events"}, "target.source"),
        ({"source": "{{task.id}}"}, "target.source"),
    ],
)
def test_eventbridge_needs_an_object_detail_and_a_type_and_source(
    changes: dict[str, Any], field: str
) -> None:
    assert refused({**VALID["eventbridge"], **changes}).field == field


def test_missing_messages_and_unknown_fields_are_refused() -> None:
    sqs = {k: v for k, v in VALID["sqs"].items() if k != "message"}
    assert refused(sqs).field == "target.message"
    assert refused({**VALID["sqs"], "url": "https://x"}).field == "target.url"
    assert refused({**VALID["sns"], "message": "bell\x07"}).field == "target.message"


def test_unknown_placeholders_are_refused_in_the_payload_field() -> None:
    error = refused({**VALID["sqs"], "message": "{{task.owner}}"})
    assert error.field == "target.message"
    assert "unknown placeholder {{task.owner}}" in error.reason


@pytest.mark.parametrize("name", ["callback_url", "scheduled_time_local", "occurrence_key"])
def test_placeholders_only_the_proxy_can_fill_are_refused_for_direct_targets(name: str) -> None:
    error = refused({**VALID["lambda"], "payload": {"x": f"{{{{{name}}}}}"}})
    assert error.field == "target.payload"
    assert "needs the HTTP proxy" in error.reason


def test_create_time_placeholders_are_filled_and_time_and_attempt_become_aws_attributes() -> None:
    target, text = direct_schedule(
        normalize_target(
            {
                **VALID["lambda"],
                "payload": {
                    "id": "{{task.id}}",
                    "n": "{{ task.name }}",
                    "t": ["{{scheduled_time}}", "try {{attempt}}"],
                },
            }
        ),
        task_id=TASK_ID,
        task_name='say "hi" \\ {braces}',
    )
    assert target.arn == FUNCTION
    assert json.loads(text) == {
        "id": TASK_ID,
        "n": 'say "hi" \\ {braces}',  # escaped inside the JSON, intact once read
        "t": [SCHEDULED_TIME_ATTRIBUTE, f"try {ATTEMPT_ATTRIBUTE}"],
    }


def test_a_known_occurrence_renders_its_own_time_and_attempt() -> None:
    _, text = direct_schedule(
        normalize_target(VALID["eventbridge"]),
        task_id=TASK_ID,
        task_name="n",
        scheduled_time="2026-11-23T00:00:00Z",
        attempt=3,
    )
    assert json.loads(text) == {"attempt": "3"}


def test_queue_text_is_sent_as_it_is_and_json_messages_serialized() -> None:
    _, text = direct_schedule(normalize_target(VALID["sqs"]), task_id=TASK_ID, task_name="n")
    assert text == "run n"
    _, text = direct_schedule(normalize_target(VALID["sns"]), task_id=TASK_ID, task_name="n")
    assert json.loads(text) == {"at": SCHEDULED_TIME_ATTRIBUTE}


def test_escaped_braces_stay_literal() -> None:
    target = normalize_target({**VALID["sqs"], "message": "{{{{task.id}}}} is {{task.id}}"})
    _, text = direct_schedule(target, task_id=TASK_ID, task_name="n")
    assert text == "{{task.id}} is " + TASK_ID


def test_sns_with_a_subject_uses_the_publish_universal_target() -> None:
    target = normalize_target({**VALID["sns"], "subject": "Report {{x}} due"})
    schedule, text = direct_schedule(target, task_id=TASK_ID, task_name="n")
    assert schedule.arn == SNS_PUBLISH_ARN
    assert json.loads(text) == {
        "TopicArn": TOPIC,
        "Message": json.dumps({"at": SCHEDULED_TIME_ATTRIBUTE}, separators=(",", ":")),
        "Subject": "Report {{x}} due",
    }


def test_the_fifo_group_and_event_parameters_travel_with_the_schedule_target() -> None:
    fifo = normalize_target({**VALID["sqs"], "queue_arn": FIFO, "message_group_id": "g1"})
    assert direct_schedule(fifo, task_id=TASK_ID, task_name="n")[0].message_group_id == "g1"
    bus, _ = direct_schedule(normalize_target(VALID["eventbridge"]), task_id=TASK_ID, task_name="")
    assert (bus.arn, bus.detail_type, bus.source) == (BUS, "report.due", "com.example.reports")


def test_oversized_messages_are_refused_after_rendering_at_worst_case_length() -> None:
    # Under the limit as written, over it once each {{attempt}} becomes the (longer) attribute.
    count = 9000
    message = "{{attempt}}" * count
    assert len(message) < 256 * 1024 < len(ATTEMPT_ATTRIBUTE) * count
    target = normalize_target({**VALID["sqs"], "message": message})
    with pytest.raises(InvalidRequest) as caught:
        direct_schedule(target, task_id=TASK_ID, task_name="n")
    assert caught.value.field == "target.message"
    assert "256 KB" in caught.value.reason


def test_the_region_must_match_unless_cross_region_is_allowed() -> None:
    far = normalize_target({**VALID["sqs"], "queue_arn": QUEUE.replace("us-east-1", "eu-west-1")})
    with pytest.raises(InvalidRequest) as caught:
        check_reach(far, TargetPolicy(region="us-east-1"))
    assert caught.value.field == "target.queue_arn"
    assert "eu-west-1" in caught.value.reason
    check_reach(far, TargetPolicy(region="us-east-1", allow_cross_region=True))
    check_reach(far, TargetPolicy())  # no region known (local): not checked


def test_targets_outside_the_roles_reach_are_refused_clearly() -> None:
    policy = TargetPolicy(allowed_arns=("arn:aws:sqs:us-east-1:123456789012:jobs-*", BUS))
    check_reach(normalize_target(VALID["eventbridge"]), policy)
    check_reach(
        normalize_target({**VALID["sqs"], "queue_arn": QUEUE.replace("jobs", "jobs-eu")}), policy
    )
    with pytest.raises(InvalidRequest) as caught:
        check_reach(normalize_target(VALID["sqs"]), policy)  # "jobs" is not "jobs-*"
    assert caught.value.field == "target.queue_arn"
    assert "scheduler role cannot reach" in caught.value.reason
    # A wildcard is only a wildcard: dots and other characters are literal.
    dotted = TargetPolicy(allowed_arns=("arn:aws:sns:us-east-1:123456789012:a.b",))
    with pytest.raises(InvalidRequest):
        check_reach(
            normalize_target({**VALID["sns"], "topic_arn": TOPIC.replace("alerts", "aXb")}),
            dotted,
        )


def test_a_deployment_that_grants_no_targets_refuses_them_all() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_reach(normalize_target(VALID["lambda"]), TargetPolicy(allowed_arns=("none",)))
    assert caught.value.field == "target.function_arn"
    assert "cannot reach any direct target" in caught.value.reason


def test_direct_targets_have_no_headers_to_redact_and_http_secrets_still_are() -> None:
    assert redact_target(VALID["sqs"]) == VALID["sqs"]
    http = normalize_target({"url": "https://x.example/", "headers": {"Authorization": "s"}})
    assert redact_target(http)["headers"] == {"Authorization": "***"}
