"""A call planned ahead (issue "Embedded local engine": the burst path) is made of parts worked
out when the engine leases the row: its outcome record, identity headers, first request's
headers and the head of that request on the wire. These tests hold those parts to the call
made without a plan: the same request, byte for byte, and the same outcome."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from proxy_lambda.handler import (
    DeliveryPlan,
    _utc_text,
    delivery_steps,
    new_traceparent,
    plan_delivery,
)
from proxy_lambda.settings import ProxySettings
from proxy_lambda.transport import OutgoingRequest, TargetResponse, request_bytes
from tests.proxy.test_proxy import OLD_SECRET, SECRET, fired, secret_settings

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NOW = 1_795_000_000.123456  # the clock at call time


def traced(event: dict[str, Any]) -> dict[str, Any]:
    """The event with a trace context of its own, so both calls send the same one."""
    event["traceparent"] = TRACE
    return event


def first_request(
    event: dict[str, Any], settings: ProxySettings, plan: DeliveryPlan | None
) -> tuple[OutgoingRequest, dict[str, Any]]:
    """The first request the call makes, and its outcome once the target answers 200."""
    steps = delivery_steps(event, settings=settings, clock=lambda: NOW, plan=plan)
    request = next(steps)
    try:
        steps.send(TargetResponse(200, {"content-type": "text/plain"}, b"ok", False))
    except StopIteration as done:
        return request, done.value
    raise AssertionError("the call followed a redirect")


URL = "http://127.0.0.1:8080/hook"
EVENTS = {
    "json body": lambda: fired(URL),
    "a callback": lambda: fired(URL, callback=True),
    "task headers": lambda: fired(
        URL,
        headers={"X-Api-Key": "k", "User-Agent": "mine/2", "Accept-Encoding": "gzip"},
    ),
    "own content type": lambda: fired(
        URL, headers={"Content-Type": "text/xml"}, body="<run at='\x00'/>"
    ),
    "a GET with a query": lambda: fired(URL, method="GET", query={"a": "1", "b": "x y"}),
    "placeholders": lambda: fired(
        URL + "/{{task.id}}", body={"at": "{{scheduled_time}}", "key": "{{occurrence_key}}"}
    ),
    "a retry": lambda: fired(URL, attempt=3, delivery_attempt=2),
}
SETTINGS = {
    "one secret": lambda: secret_settings(),
    "two secrets": lambda: secret_settings(signing_secret=f"{SECRET} {OLD_SECRET}"),
    "no secret": lambda: ProxySettings.from_env(
        {"TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8"}
    ),
}


# A callback needs a signing secret (see the last test).
CASES = [(k, s) for k in EVENTS for s in SETTINGS if (k, s) != ("a callback", "no secret")]


@pytest.mark.parametrize(("kind", "keys"), CASES)
def test_a_prepared_request_is_the_request_made_at_call_time(kind: str, keys: str) -> None:
    settings = SETTINGS[keys]()
    event = traced(EVENTS[kind]())
    plan = plan_delivery(event, settings=settings)
    assert plan is not None and plan.prepared is not None
    assert plan.prepared.head is not None  # an address checked ahead: the head made ahead
    planned, planned_outcome = first_request(event, settings, plan)
    unplanned, unplanned_outcome = first_request(event, settings, None)
    assert planned.wire == request_bytes(unplanned)  # byte for byte on the wire
    assert list(planned.headers.items()) == list(unplanned.headers.items())  # order too
    assert planned._replace(wire=None, timeout=0) == unplanned._replace(timeout=0)
    assert planned.headers["webhook-timestamp"] == str(int(NOW))  # stamped at call time
    assert list(planned_outcome.items()) == list(unplanned_outcome.items())
    assert planned_outcome["started_at"] == "2026-11-18T11:06:40.123456Z"
    assert planned_outcome["response_headers"] is not plan.prepared.outcome["response_headers"]


def test_each_plan_carries_its_own_trace() -> None:
    """Without a trace context in the event, each call starts a trace of its own: a plan is
    one call, so each plan draws a fresh one, and the head on the wire carries it."""
    settings = secret_settings()
    plans = [plan_delivery(fired(URL), settings=settings) for _ in range(2)]
    requests = [first_request(fired(URL), settings, plan)[0] for plan in plans]
    traces = [request.headers["traceparent"] for request in requests]
    assert traces[0] != traces[1]
    for request, trace in zip(requests, traces, strict=True):
        assert len(trace) == len(new_traceparent())
        assert request.wire == request_bytes(request._replace(wire=None))
        assert f"traceparent: {trace}\r\n".encode() in request.wire


def test_a_target_checked_at_call_time_gets_no_prepared_head() -> None:
    """A named host is resolved and checked at call time: only the parts that do not depend
    on the guard's verdict are made ahead, and the request is rendered when it is sent."""
    settings = secret_settings()
    event = traced(fired("http://localhost:8080/hook"))
    plan = plan_delivery(event, settings=settings)
    assert plan is not None and plan.first_hop is None and plan.prepared is not None
    assert plan.prepared.head is None and plan.prepared.headers is None
    steps = delivery_steps(
        event, settings=settings, clock=lambda: NOW, plan=plan, resolve=lambda h, p: ["127.0.0.1"]
    )
    request = next(steps)
    assert request.wire is None
    assert request.headers["traceparent"] == TRACE


def test_a_callback_without_a_secret_is_refused_at_call_time_as_before() -> None:
    settings = ProxySettings.from_env({"TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8"})
    plan = plan_delivery(fired(URL, callback=True), settings=settings)
    assert plan is not None and plan.prepared is None  # nothing made ahead
    with pytest.raises(Exception, match="TIMEBRIDGE_SIGNING_SECRET"):
        first_request(fired(URL, callback=True), settings, plan)


def test_utc_text_writes_what_datetime_writes() -> None:
    """The stamp in every outcome (`started_at`), made without a datetime per call."""
    rng = random.Random(7)
    edges = [0.0, 0.5e-6, 1.5e-6, 2.5e-6, 0.9999994, 0.9999995, 0.9999996, 0.9999985, 0.25]
    samples = [float(s) for s in (0, 1, -1, 1_795_000_000)]
    for _ in range(20_000):
        whole = math.floor(rng.uniform(-2e9, 4e9))
        samples.append(whole + rng.choice(edges))
        samples.append(rng.uniform(-2e9, 4e9))
    for seconds in samples:
        expected = datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
        assert _utc_text(seconds) == expected, seconds
