"""Starting a delivery outside a schedule (run now, manual retry), and the local delivery path.

- `LambdaInvoker` (AWS): an asynchronous invoke of the proxy Lambda; its outcome returns through
  the Lambda destination -> SQS -> recorder path like any scheduled firing.
- `LocalDelivery`: the proxy handler called in-process and its outcome handed straight to the
  recorder; the embedded engine and `ThreadInvoker` both use it. `call_async` runs the same
  handler steps (guard, signature, timeouts, redirects) with an asyncio sender, for the
  engine's bursts.
- `ThreadInvoker` (local): `LocalDelivery` on a small worker pool, so the API answers at once.
- `AwsTargetDelivery` (local): direct targets (lambda, sqs, sns, eventbridge) delivered through
  boto3 to whatever the AWS configuration points at (`AWS_ENDPOINT_URL`: moto server in tests),
  as EventBridge Scheduler would deliver them; `LocalDelivery.call` picks it by target type.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from proxy_lambda.handler import (
    REDIRECT_STATUSES,
    DeliveryPlan,
    DeliverySteps,
    delivery_steps,
    handle,
    plan_delivery,
)
from proxy_lambda.settings import ProxySettings
from proxy_lambda.signing import parse_signing_secrets
from proxy_lambda.transport import DeliveryError, OutgoingRequest, Sender, TargetResponse
from service.adapters.async_http import AsyncSender
from service.adapters.direct import AwsTargetDelivery, is_direct_event
from service.application.recorder import MalformedRecord, Recorder, outcome_from_record
from service.domain.errors import UpstreamThrottled, UpstreamUnavailable
from service.settings import Settings

logger = logging.getLogger("timebridge.delivery")


def proxy_settings_for(settings: Settings, signing_secret: str | None) -> ProxySettings:
    """The proxy's settings from the service's, for in-process delivery."""
    return ProxySettings(
        signing_keys=parse_signing_secrets(signing_secret) if signing_secret else (),
        public_url=settings.public_url,
        allowed_hosts=settings.allowed_target_hosts,
        allowed_networks=tuple(settings.allowed_target_networks),
    )


class LocalDelivery:
    """One firing delivered in this process: proxy handler, then recorder."""

    def __init__(
        self,
        recorder: Recorder,
        proxy_settings: ProxySettings,
        *,
        send: Sender | None = None,
        direct: AwsTargetDelivery | None = None,
    ) -> None:
        self.recorder = recorder
        self.proxy_settings = proxy_settings
        self.send = send
        self.direct = direct  # made on first use: boto3 is imported only for direct targets

    def call(self, event: dict[str, Any]) -> dict[str, Any]:
        """Only the delivery: call the target, return the outcome record (the proxy's format).
        The target's type picks the deliverer: direct targets go through boto3, http through
        the proxy handler."""
        if is_direct_event(event):
            if self.direct is None:
                self.direct = AwsTargetDelivery()
            return self.direct.call(event)
        return handle(event, settings=self.proxy_settings, send=self.send)

    def plan(self, event: dict[str, Any]) -> DeliveryPlan | None:
        """What `call_async` can be told ahead of the call (see proxy_lambda.handler
        .plan_delivery); None for a direct target or an event with nothing to plan."""
        if self.send is not None or is_direct_event(event):
            return None
        return plan_delivery(event, settings=self.proxy_settings)

    async def call_async(
        self, event: dict[str, Any], sender: AsyncSender, plan: DeliveryPlan | None = None
    ) -> dict[str, Any]:
        """`call` on an asyncio loop: the proxy's own steps, each request sent by `sender`.
        Steps that may resolve a host name (a target named by host, a redirect) run in a
        thread, so a slow DNS answer never holds up the loop. With a sender of its own given
        at construction (tests), the synchronous path runs in a thread instead. `plan`, made
        by `plan` on the same event earlier, saves reading the event again."""
        planned = plan is not None  # only an http call is planned
        if not planned and (self.send is not None or is_direct_event(event)):
            return await asyncio.to_thread(self.call, event)  # boto3 is synchronous
        steps = delivery_steps(event, settings=self.proxy_settings, plan=plan)
        # Off the loop when the guard may look a host name up (planned: a target by name).
        off_loop = plan.first_hop is None if plan is not None else not _names_an_address(event)
        step: OutgoingRequest | dict[str, Any]
        step = await _advance(steps, None) if off_loop else _step(steps, None)
        while isinstance(step, OutgoingRequest):
            reply: TargetResponse | DeliveryError
            try:
                reply = await sender.send(step)
            except DeliveryError as exc:
                reply = exc
            redirect = isinstance(reply, TargetResponse) and reply.status in REDIRECT_STATUSES
            step = await _advance(steps, reply) if off_loop or redirect else _step(steps, reply)
        return step

    def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        """Deliver and record; returns the proxy's outcome record. A record the recorder cannot
        use is logged (locally there is no dead-letter queue to send it to)."""
        outcome = self.call(event)
        try:
            self.recorder.record_outcome(outcome_from_record(outcome))
        except MalformedRecord as exc:
            logger.error("outcome not recorded: %s", exc)
        return outcome


def _step(
    steps: DeliverySteps, reply: TargetResponse | DeliveryError | None
) -> OutgoingRequest | dict[str, Any]:
    """The next request to send, or the outcome record once the steps are done."""
    try:
        return next(steps) if reply is None else steps.send(reply)
    except StopIteration as done:
        outcome: dict[str, Any] = done.value
        return outcome


async def _advance(
    steps: DeliverySteps, reply: TargetResponse | DeliveryError | None
) -> OutgoingRequest | dict[str, Any]:
    """`_step` in a thread: a step that may look a host name up (the guard)."""
    return await asyncio.to_thread(_step, steps, reply)


def _names_an_address(event: Any) -> bool:
    """Whether the event's target URL names an IP address (no DNS lookup to wait for)."""
    try:
        host = urlsplit(event["target"]["url"]).hostname or ""
        ipaddress.ip_address(host)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return True


class ThreadInvoker:
    """Run-now locally: deliveries on a worker pool; `drain()` waits for those under way."""

    def __init__(self, delivery: LocalDelivery, *, workers: int = 4) -> None:
        self.delivery = delivery
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tb-run")
        self._futures: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def fire(self, event: dict[str, Any]) -> None:
        future = self._pool.submit(self._run, event)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _run(self, event: dict[str, Any]) -> None:
        try:
            self.delivery.deliver(event)
        except Exception:
            logger.exception("run-now delivery failed")

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    def drain(self, timeout: float = 30.0) -> None:
        with self._lock:
            pending = list(self._futures)
        for future in pending:
            future.result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


class LambdaInvoker:
    """Run-now on AWS: `Invoke` with InvocationType=Event on the proxy function."""

    def __init__(self, function_arn: str, *, client: Any = None) -> None:
        self.function_arn = function_arn
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(retries={"mode": "adaptive", "max_attempts": 5}, connect_timeout=5)
            self._client = boto3.client("lambda", config=config)
        return self._client

    def fire(self, event: dict[str, Any]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        payload = json.dumps(event, separators=(",", ":")).encode()
        try:
            self.client.invoke(
                FunctionName=self.function_arn, InvocationType="Event", Payload=payload
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("TooManyRequestsException", "ThrottlingException"):
                raise UpstreamThrottled(f"Lambda throttled the run: {code}") from None
            raise UpstreamUnavailable(f"Lambda refused the run ({code})") from None
        except BotoCoreError as exc:
            raise UpstreamUnavailable(f"Lambda unreachable: {exc}") from None


class DirectRunInvoker:
    """Run-now on AWS: http targets through the proxy Lambda (`proxy`); a direct target is sent
    from this process (a run now does not go through EventBridge Scheduler, so nothing else
    would deliver it) and its outcome recorded at once."""

    def __init__(
        self, proxy: LambdaInvoker, recorder: Recorder, *, direct: AwsTargetDelivery | None = None
    ) -> None:
        self.proxy = proxy
        self.recorder = recorder
        self.direct = direct

    def fire(self, event: dict[str, Any]) -> None:
        if not is_direct_event(event):
            self.proxy.fire(event)
            return
        if self.direct is None:
            self.direct = AwsTargetDelivery()
        self.recorder.record_outcome(outcome_from_record(self.direct.call(event)))
