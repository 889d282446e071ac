"""Proxy: the generic HTTP-proxy function EventBridge Scheduler invokes (asynchronously).

Its async invocation config makes no retries (Timebridge retries on its own schedule) and sends
every outcome, success or failure, to the outcomes queue the recorder reads. Optionally it runs
in the VPC, to reach internal services that the allow-lists name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.lambdas import PROXY_HANDLER, Placement, python_function

# A target may take up to 900 s (the task's timeout_seconds limit), Lambda's own maximum.
PROXY_TIMEOUT = Duration.minutes(15)
# An invocation Lambda could not start within this age goes to the failure destination.
MAX_EVENT_AGE = Duration.hours(1)


class Proxy(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: Path,
        environment: Mapping[str, str],
        outcomes: sqs.IQueue,
        key: kms.IKey,
        placement: Placement | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "Function",
            code=code,
            handler=PROXY_HANDLER,
            description="Timebridge proxy: calls a task's target when its schedule fires",
            environment=environment,
            key=key,
            timeout=PROXY_TIMEOUT,
            memory_size=256,
            placement=placement,
        )
        self.function.configure_async_invoke(
            retry_attempts=0,
            max_event_age=MAX_EVENT_AGE,
            on_success=destinations.SqsDestination(outcomes),
            on_failure=destinations.SqsDestination(outcomes),
        )
