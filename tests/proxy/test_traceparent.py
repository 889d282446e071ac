"""The proxy sends a W3C `traceparent` to every target (issue 10 "Operator experience",
traces): the invoker's when the event carries a valid one (run now / retry from a traced API
request), else a fresh one per call, so each firing is its own trace at the target."""

from __future__ import annotations

import re

from proxy_lambda.handler import handle
from tests.proxy.test_proxy import RecordingSender, fired, public_resolver, secret_settings

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")
CARRIED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def sent_traceparent(event: dict[str, object]) -> str:
    sender = RecordingSender()
    outcome = handle(event, send=sender, settings=secret_settings(), resolve=public_resolver)
    assert outcome["status"] == "success"
    (request,) = sender.requests
    value: str = request.headers["traceparent"]
    return value


def test_a_traceparent_carried_in_the_event_is_forwarded() -> None:
    event = fired("https://hooks.example.com/")
    event["traceparent"] = CARRIED
    assert sent_traceparent(event) == CARRIED


def test_without_one_each_call_gets_a_fresh_valid_traceparent() -> None:
    first = sent_traceparent(fired("https://hooks.example.com/"))
    second = sent_traceparent(fired("https://hooks.example.com/"))
    assert TRACEPARENT.fullmatch(first) and TRACEPARENT.fullmatch(second)
    assert first.split("-")[1] != second.split("-")[1]


def test_a_malformed_traceparent_is_replaced_not_fatal() -> None:
    for bad in ("nonsense", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", 42):
        event = fired("https://hooks.example.com/")
        event["traceparent"] = bad
        sent = sent_traceparent(event)
        assert sent != bad and TRACEPARENT.fullmatch(sent)
