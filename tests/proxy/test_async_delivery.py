"""The local engine's way of calling targets (issue "Embedded local engine"): the proxy's own
steps driven from an asyncio loop by `LocalDelivery.call_async`, giving the same outcome
records, signatures and guard decisions as the Lambda's synchronous path."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, cast

import pytest
from standardwebhooks import Webhook

from proxy_lambda.settings import ProxySettings
from service.adapters.async_http import AsyncSender
from service.adapters.invoke import LocalDelivery
from service.application.recorder import Recorder
from tests.proxy.loopback import TargetServer
from tests.proxy.test_proxy import SECRET, fired


@pytest.fixture
def server() -> Iterator[TargetServer]:
    target = TargetServer().start()
    yield target
    target.stop()


def call(
    delivery: LocalDelivery, events: list[dict[str, Any]], *, planned: bool = False
) -> list[dict[str, Any]]:
    """The events' outcomes through `call_async`; `planned`: each with the plan the engine
    makes for it when it leases the row (LocalDelivery.plan)."""
    plans = [delivery.plan(e) if planned else None for e in events]

    async def run() -> list[dict[str, Any]]:
        sender = AsyncSender()
        try:
            calls = (
                delivery.call_async(e, sender, plan) for e, plan in zip(events, plans, strict=True)
            )
            return list(await asyncio.gather(*calls))
        finally:
            await sender.close()

    return asyncio.run(run())


def delivery_for(**settings: Any) -> LocalDelivery:
    proxy = ProxySettings.from_env(
        {
            "TIMEBRIDGE_SIGNING_SECRET": SECRET,
            **{f"TIMEBRIDGE_{k.upper()}": v for k, v in settings.items()},
        }
    )
    return LocalDelivery(cast(Recorder, None), proxy)  # call_async records nothing


def test_concurrent_calls_are_signed_and_recorded_like_the_lambdas(server: TargetServer) -> None:
    delivery = delivery_for(allowed_target_networks="127.0.0.1/32")
    events = [fired(server.url(f"/ok/{i}"), execution_id=f"e-{i}") for i in range(20)]
    outcomes = call(delivery, events)
    assert {o["status"] for o in outcomes} == {"success"}
    assert len(server.received) == 20
    for request in server.received:
        Webhook(SECRET).verify(request.body, request.headers)  # raises when it does not verify


def test_a_named_target_is_resolved_off_the_loop_and_checked(server: TargetServer) -> None:
    allowed = delivery_for(allowed_target_hosts="localhost")
    (reached,) = call(allowed, [fired(f"http://localhost:{server.port}/named")])
    assert reached["status"] == "success", reached["error"]
    refused = delivery_for(allowed_target_networks="10.0.0.0/8")
    (guarded,) = call(refused, [fired(f"http://localhost:{server.port}/named")])
    assert (guarded["status"], guarded["error_kind"]) == ("trigger_failed", "unsafe_target")
    assert [r.path for r in server.received] == ["/named"]


def test_a_redirect_hop_goes_through_the_guard(server: TargetServer) -> None:
    delivery = delivery_for(allowed_target_networks="127.0.0.1/32", proxy_follow_redirects="true")
    inside = server.url("/landed")
    (followed,) = call(delivery, [fired(server.url(f"/redirect?to={inside}&code=307"))])
    assert (followed["status"], followed["redirects"]) == ("success", 1)
    (refused,) = call(
        delivery, [fired(server.url("/redirect?to=http://169.254.169.254/latest&code=307"))]
    )
    assert (refused["status"], refused["error_kind"]) == ("trigger_failed", "unsafe_target")
    assert [r.path for r in server.received].count("/landed") == 1


def test_a_planned_call_is_the_same_call(server: TargetServer) -> None:
    """The engine plans a call as it leases the row (issue "Embedded local engine": the burst
    path). Planned or not, the target gets the same signed request and the outcome is the same:
    an address target checked ahead, a named one still resolved and checked at call time, a
    refused address still refused, a malformed event still reported."""
    delivery = delivery_for(allowed_target_networks="127.0.0.1/32")
    events = [
        fired(server.url("/ok/address")),
        fired(f"http://localhost:{server.port}/ok/named"),
        fired("http://10.1.2.3/internal"),
        {"version": 1, "task_id": "broken"},
    ]
    plans = [delivery.plan(event) for event in events]
    assert plans[0] is not None and plans[0].first_hop is not None  # checked ahead
    assert plans[1] is not None and plans[1].first_hop is None  # a name: checked at call time
    assert plans[2] is not None and plans[2].first_hop is None  # refused: reported at call time
    assert plans[3] is None
    kept = ("status", "status_code", "error_kind", "occurrence_key", "scheduled_time", "attempt")
    unplanned = call(delivery, events)
    planned = call(delivery, events, planned=True)
    assert [{k: o[k] for k in kept} for o in planned] == [
        {k: o[k] for k in kept} for o in unplanned
    ]
    statuses = [o["status"] for o in planned]
    assert statuses == ["success", "success", "trigger_failed", "trigger_failed"]
    assert [o["error_kind"] for o in planned][2:] == ["unsafe_target", "malformed_event"]
    paths = sorted(r.path for r in server.received)
    assert paths == ["/ok/address", "/ok/address", "/ok/named", "/ok/named"]
    for request in server.received:
        Webhook(SECRET).verify(request.body, request.headers)  # signed at call time, both ways
