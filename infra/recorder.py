"""Recorder: the outcomes queue (with its dead-letter queue) the proxy's destinations write to,
the function that records outcomes from it with partial batch responses, and the sweeper that a
timer runs for the reconciler and the callback-timeout sweep."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.lambdas import RECORDER_HANDLER, SWEEPER_HANDLER, Placement, python_function

RECORDER_TIMEOUT = Duration.seconds(60)
MAX_RECEIVES = 5
SWEEP_EVERY = Duration.minutes(1)


class OutcomeQueues(Construct):
    """`queue` (visibility six times the recorder's timeout, as AWS advises for SQS triggers)
    and `dead_letters`, where a record lands after MAX_RECEIVES failed attempts."""

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(RECORDER_TIMEOUT.to_seconds() * 6),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=MAX_RECEIVES, queue=self.dead_letters
            ),
        )


class Recorder(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: Path,
        environment: Mapping[str, str],
        queues: OutcomeQueues,
        schedule_dead_letters: sqs.IQueue,
        key: kms.IKey,
        placement: Placement | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "Function",
            code=code,
            handler=RECORDER_HANDLER,
            description="Timebridge recorder: turns proxy outcomes into executions",
            environment=environment,
            key=key,
            timeout=RECORDER_TIMEOUT,
            memory_size=512,
            placement=placement,
        )
        self.function.add_event_source(
            sources.SqsEventSource(
                queues.queue,
                batch_size=10,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
                max_concurrency=5,  # bounds the database connections the recorder opens
            )
        )
        # What the scheduler could not deliver becomes history too (trigger_failed).
        self.function.add_event_source(
            sources.SqsEventSource(
                schedule_dead_letters,
                batch_size=10,
                report_batch_item_failures=True,
                max_concurrency=2,
            )
        )
        self.sweeper = python_function(
            self,
            "Sweeper",
            code=code,
            handler=SWEEPER_HANDLER,
            description="Timebridge sweeper: reconciler and callback-timeout sweep",
            environment=environment,
            key=key,
            timeout=Duration.minutes(5),
            memory_size=512,
            placement=placement,
        )
        # The next tick runs the sweep again; a retry would only overlap with it.
        self.sweeper.configure_async_invoke(retry_attempts=0, max_event_age=Duration.minutes(5))
        self.timer = events.Rule(
            self,
            "SweepTimer",
            description="Runs the Timebridge sweeper",
            schedule=events.Schedule.rate(SWEEP_EVERY),
            targets=[targets.LambdaFunction(self.sweeper, retry_attempts=0)],
        )

    @property
    def functions(self) -> tuple[lambda_.Function, lambda_.Function]:
        return (self.function, self.sweeper)
