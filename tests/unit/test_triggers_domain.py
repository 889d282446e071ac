"""Topic patterns, payload filters, trigger schedules and the dependency graph (issue 9 part A;
SEEDS S3-05 event triggers with `*` / `**` and filters, S3-11 topic validation, S1-04 task
dependencies). Pure domain: standard library only."""

from __future__ import annotations

from typing import Any

import pytest

from proxy_lambda.template import EventContext, render
from service.domain.errors import InvalidRequest
from service.domain.triggers import (
    after_fires,
    check_filter,
    check_pattern,
    check_topic,
    check_trigger_schedule,
    filter_matches,
    find_cycle,
    outcome_topic,
    topic_matches,
)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("orders.created", "orders.created", True),
        ("orders.created", "orders.deleted", False),
        ("orders.*", "orders.created", True),
        ("orders.*", "orders.eu.created", False),  # `*` is exactly one segment
        ("orders.*", "orders", False),
        ("*.created", "orders.created", True),
        ("orders.**", "orders", True),  # `**` may be zero segments
        ("orders.**", "orders.eu.created", True),
        ("**.created", "orders.eu.created", True),
        ("**", "anything.at.all", True),
        ("orders.**.created", "orders.created", True),
        ("orders.**.created", "orders.eu.de.created", True),
        ("orders.**.created", "orders.eu.de.deleted", False),
        ("task.*.succeeded", "task.report.succeeded", True),
        ("task.*.succeeded", "task.report.failed", False),
        ("payments.*", "orders.created", False),
    ],
)
def test_topic_patterns_star_is_one_segment_double_star_any(
    pattern: str, topic: str, expected: bool
) -> None:
    """S3-05: `*` matches one dot-separated segment, `**` any number including zero."""
    assert topic_matches(check_pattern(pattern), check_topic(topic)) is expected


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "is required"),
        ("orders..created", "segment 2 is empty"),
        (".orders", "segment 1 is empty"),
        ("orders.", "segment 2 is empty"),
        ("orders.cre*ted", "must be 1-64 of"),
        ("orders.***", "must be 1-64 of"),
        ("orders created", "must be 1-64 of"),
        ("x" * 256, "longer than 255"),
    ],
)
def test_invalid_patterns_are_refused_naming_the_field(pattern: str, reason: str) -> None:
    """S3-11: topic names are validated."""
    with pytest.raises(InvalidRequest) as caught:
        check_pattern(pattern)
    assert caught.value.field == "schedule.topic"
    assert reason in caught.value.reason


def test_a_published_topic_may_not_hold_wildcards() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_topic("orders.*")
    assert caught.value.field == "topic"


PAYLOAD: dict[str, Any] = {
    "amount": 120,
    "currency": "EUR",
    "customer": {"tier": "gold", "id": "cus_42", "tags": ["vip", "eu"]},
    "flag": True,
    "note": None,
}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"currency": {"eq": "EUR"}}, True),
        ({"currency": {"eq": "USD"}}, False),
        ({"flag": {"eq": 1}}, False),  # JSON: true is not 1
        ({"amount": {"eq": 120.0}}, True),
        ({"currency": {"ne": "USD"}}, True),
        ({"currency": {"ne": "EUR"}}, False),
        ({"missing": {"ne": "x"}}, True),
        ({"customer.tier": {"in": ["gold", "silver"]}}, True),
        ({"customer.tier": {"in": ["bronze"]}}, False),
        ({"amount": {"gt": 100}}, True),
        ({"amount": {"gt": 120}}, False),
        ({"amount": {"gte": 120}}, True),
        ({"amount": {"gte": 121}}, False),
        ({"amount": {"lt": 121}}, True),
        ({"amount": {"lt": 120}}, False),
        ({"amount": {"lte": 120}}, True),
        ({"amount": {"lte": 119}}, False),
        ({"currency": {"gt": 5}}, False),  # a string never orders against a number
        ({"currency": {"gte": "EUA"}}, True),  # strings order with strings
        ({"customer.id": {"exists": True}}, True),
        ({"customer.email": {"exists": True}}, False),
        ({"customer.email": {"exists": False}}, True),
        ({"note": {"exists": True}}, True),  # present, even if null
        ({"customer.id": {"prefix": "cus_"}}, True),
        ({"customer.id": {"prefix": "usr_"}}, False),
        ({"amount": {"prefix": "12"}}, False),  # prefix is for strings only
        ({"customer.tags.0": {"eq": "vip"}}, True),  # list index in a path
        ({"missing.deeper": {"eq": 1}}, False),
        ({"amount": {"gte": 100, "lt": 200}, "customer.tier": {"eq": "gold"}}, True),
        ({"amount": {"gte": 100, "lt": 110}, "customer.tier": {"eq": "gold"}}, False),
    ],
)
def test_every_filter_operator_and_all_conditions_must_hold(
    conditions: dict[str, Any], expected: bool
) -> None:
    """S3-05: the optional filter; eq ne in gt gte lt lte exists prefix on dotted paths."""
    assert filter_matches(check_filter(conditions), PAYLOAD) is expected


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        ([1, 2], "schedule.filter", "must map payload paths"),
        ({"a..b": {"eq": 1}}, "schedule.filter.a..b", "none empty"),
        ({"a": 5}, "schedule.filter.a", "must be an object of conditions"),
        ({"a": {}}, "schedule.filter.a", "must be an object of conditions"),
        ({"a": {"like": "x"}}, "schedule.filter.a.like", "unknown operator"),
        ({"a": {"in": "x"}}, "schedule.filter.a.in", "must be a list"),
        ({"a": {"gt": [1]}}, "schedule.filter.a.gt", "number or a string"),
        ({"a": {"exists": "yes"}}, "schedule.filter.a.exists", "true or false"),
        ({"a": {"prefix": 3}}, "schedule.filter.a.prefix", "must be a string"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(value: Any, field: str, reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_filter(value)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_trigger_schedules_are_normalized_and_checked() -> None:
    assert check_trigger_schedule({"kind": "after", "tasks": ["a"]}) == {
        "kind": "after",
        "tasks": ["a"],
        "on": "success",
    }
    with pytest.raises(InvalidRequest) as caught:
        check_trigger_schedule({"kind": "after", "tasks": ["a"], "on": "sometimes"})
    assert caught.value.field == "schedule.on"
    with pytest.raises(InvalidRequest) as caught:
        check_trigger_schedule({"kind": "after", "tasks": []})
    assert caught.value.field == "schedule.tasks"
    with pytest.raises(InvalidRequest) as caught:
        check_trigger_schedule({"kind": "event", "topic": "a.b", "cron": "x"})
    assert caught.value.field == "schedule.cron"


def test_after_fires_on_success_failure_or_completion() -> None:
    assert after_fires("success", succeeded=True) and not after_fires("success", succeeded=False)
    assert after_fires("failure", succeeded=False) and not after_fires("failure", succeeded=True)
    assert after_fires("completion", succeeded=True) and after_fires("completion", succeeded=False)


def test_outcome_topics_make_the_task_name_one_segment() -> None:
    """S3-10 pipelines: each ended execution publishes task.<name>.succeeded|failed."""
    assert outcome_topic("nightly report.v2", True) == "task.nightly-report-v2.succeeded"
    assert outcome_topic("etl", False) == "task.etl.failed"


def test_cycles_are_found_through_the_graph() -> None:
    edges = {"c": {"b"}, "b": {"a"}}
    assert find_cycle("a", {**edges, "a": {"c"}}) == ["a", "c", "b", "a"]
    assert find_cycle("a", {**edges, "a": set()}) is None
    assert find_cycle("a", {"a": {"a"}}) == ["a", "a"]


def test_event_placeholders_render_topic_payload_and_paths() -> None:
    event = {"topic": "orders.created", "payload": {"order": {"id": 7, "lines": [{"sku": "x"}]}}}
    context = EventContext({"task.name": "t"}, event)
    body = {
        "topic": "{{event.topic}}",
        "all": "{{event.payload}}",
        "id": "{{event.payload.order.id}}",
        "text": "order {{event.payload.order.id}} of {{task.name}}",
        "sku": "{{event.payload.order.lines.0.sku}}",
        "absent": "{{event.payload.nope}}",
    }
    assert render(body, context) == {
        "topic": "orders.created",
        "all": {"order": {"id": 7, "lines": [{"sku": "x"}]}},
        "id": 7,
        "text": "order 7 of t",
        "sku": "x",
        "absent": None,
    }
    with pytest.raises(KeyError):
        render("{{nothing.here}}", context)
