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


def call(delivery: LocalDelivery, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        sender = AsyncSender()
        try:
            return list(await asyncio.gather(*(delivery.call_async(e, sender) for e in events)))
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
