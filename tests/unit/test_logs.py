"""Structured JSON logs with the request id, bearer credentials masked (issue "Tenants, roles
and security hardening", item 3)."""

from __future__ import annotations

import json
import logging

from service.logs import JsonFormatter, mask, request_id


def test_lines_are_json_with_the_request_id_and_no_bearer_token() -> None:
    record = logging.LogRecord(
        "timebridge", logging.WARNING, __file__, 1, "called with Bearer tb_abc.def", (), None
    )
    record.occurrence_key = "t:2026-11-23T09:00:00Z:1"
    token = request_id.set("req-123")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["message"] == "called with Bearer ***"
    assert line["request_id"] == "req-123"
    assert line["occurrence_key"] == "t:2026-11-23T09:00:00Z:1"
    assert line["level"] == "WARNING"


def test_mask_leaves_other_text_alone() -> None:
    assert mask("authorization: bearer x.y.z; next") == "authorization: bearer ***; next"
    assert mask("no credentials here") == "no credentials here"


def test_late_and_missed_alerts_become_the_metric_the_lateness_alarm_watches(
    capsys: object,
) -> None:
    from service.adapters.alerts import EmfAlertSink

    seen: list[dict[str, object]] = []

    class Inner:
        def publish(self, alert: dict[str, object]) -> None:
            seen.append(alert)

    sink = EmfAlertSink(Inner(), "prod", clock=lambda: 1_800_000_000.0)
    sink.publish({"kind": "late", "message": "x"})
    sink.publish({"kind": "final_failure", "message": "y"})
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # type: ignore[attr-defined]
    assert printed == [sink.metric_line()]
    assert printed[0]["Stage"] == "prod" and printed[0]["LateExecutions"] == 1
    metric = printed[0]["_aws"]["CloudWatchMetrics"][0]
    assert (metric["Namespace"], metric["Metrics"][0]["Name"]) == ("Timebridge", "LateExecutions")
    assert [a["kind"] for a in seen] == ["late", "final_failure"]
