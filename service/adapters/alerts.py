"""Alert sinks on AWS: an SNS topic (TIMEBRIDGE_ALERT_TOPIC_ARN). Every alert is also a row that
`GET /v1/alerts` lists; locally the sink is a log line (service.application.recorder)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class SnsAlertSink:
    def __init__(self, topic_arn: str, *, client: Any = None) -> None:
        self.topic_arn = topic_arn
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sns")
        return self._client

    def publish(self, alert: Mapping[str, Any]) -> None:
        subject = f"Timebridge alert: {alert['kind']}"[:100]
        self.client.publish(
            TopicArn=self.topic_arn,
            Subject=subject,
            Message=json.dumps(dict(alert), default=str, sort_keys=True),
        )


class EmfAlertSink:
    """On Lambda: each late or missed run also becomes a CloudWatch embedded-metric line
    (namespace Timebridge, metric LateExecutions, dimension Stage) that the stack's lateness
    alarm watches; then the alert goes on to `inner`."""

    KINDS = frozenset({"late", "missed"})

    def __init__(self, inner: Any, stage: str, *, clock: Any = None) -> None:
        import time

        self.inner = inner
        self.stage = stage
        self.clock = clock or time.time

    def publish(self, alert: Mapping[str, Any]) -> None:
        if alert.get("kind") in self.KINDS:
            print(json.dumps(self.metric_line()), flush=True)
        self.inner.publish(alert)

    def metric_line(self) -> dict[str, Any]:
        return {
            "_aws": {
                "Timestamp": int(self.clock() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": "Timebridge",
                        "Dimensions": [["Stage"]],
                        "Metrics": [{"Name": "LateExecutions", "Unit": "Count"}],
                    }
                ],
            },
            "Stage": self.stage,
            "LateExecutions": 1,
        }
