"""Alarms: one SNS topic (encrypted with the deployment key, optionally mailed) and an alarm for
each way the firing path can silently stop: outcomes piling up in the dead-letter queue, proxy
faults or undeliverable outcomes, recorder or sweeper errors, throttled functions, API 5xx, and
late or missed runs (the `LateExecutions` metric the recorder publishes)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import DeploymentConfig

PERIOD = Duration.minutes(5)
METRIC_NAMESPACE = "Timebridge"
LATENESS_METRIC = "LateExecutions"


class Alarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        key: kms.IKey,
        dead_letters: sqs.IQueue,
        proxy: lambda_.Function,
        recorder: lambda_.Function,
        sweeper: lambda_.Function,
        functions: Sequence[lambda_.Function],
        api_server_errors: cloudwatch.IMetric,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self, "Topic", display_name=f"Timebridge {config.stage} alarms", master_key=key
        )
        if config.alert_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alert_email))
        self.alarms: list[cloudwatch.Alarm] = []
        self._add(
            "DeadLetters",
            "Outcomes the recorder could not record are in the dead-letter queue",
            dead_letters.metric_approximate_number_of_messages_visible(
                period=PERIOD, statistic="Maximum"
            ),
        )
        self._add(
            "ProxyErrors", "The proxy failed (its own fault)", proxy.metric_errors(period=PERIOD)
        )
        self._add(
            "ProxyOutcomesUndelivered",
            "The proxy's outcomes could not be delivered to the outcomes queue",
            proxy.metric("DestinationDeliveryFailures", period=PERIOD, statistic="Sum"),
        )
        self._add("RecorderErrors", "The recorder failed", recorder.metric_errors(period=PERIOD))
        self._add("SweeperErrors", "The sweeper failed", sweeper.metric_errors(period=PERIOD))
        throttles = {
            f"t{index}": function.metric_throttles(period=PERIOD)
            for index, function in enumerate(functions)
        }
        self._add(
            "Throttles",
            "A Timebridge function was throttled",
            cloudwatch.MathExpression(
                expression=" + ".join(throttles),
                using_metrics=throttles,
                label="Throttles",
                period=PERIOD,
            ),
        )
        self._add("ApiServerErrors", "The API answered 5xx", api_server_errors, threshold=5)
        self._add(
            "Lateness",
            "Runs started more than the lateness threshold late, or were missed",
            cloudwatch.Metric(
                namespace=METRIC_NAMESPACE,
                metric_name=LATENESS_METRIC,
                dimensions_map={"Stage": config.stage},
                period=PERIOD,
                statistic="Sum",
            ),
        )

    def _add(
        self, name: str, description: str, metric: cloudwatch.IMetric, *, threshold: float = 1
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
