"""Recorder Lambda entry points.

- `handler(event, context)`: an SQS batch whose bodies are Lambda destination records of the proxy
  (or dead-letter messages of the schedules: invocations EventBridge Scheduler gave up on)
  (requestPayload = the schedule's Input, responsePayload = the proxy's outcome record; on the
  failure destination, the proxy's error). Each record goes through the same use case the local
  engine calls in-process (service.application.recorder.Recorder). The answer lists the records
  that were not applied (`batchItemFailures`), so SQS retries only those and, past its receive
  limit, moves them to the dead-letter queue: nothing is dropped silently.
- `sweep_handler(event, context)`: a timer (EventBridge rule) that runs the callback-timeout
  sweeper, finishes interrupted follow-ups, prunes old history and reconciles schedules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from service.application.recorder import (
    MalformedRecord,
    Outcome,
    outcome_from_failed_invocation,
    outcome_from_record,
)
from service.container import Container, build_container
from service.domain.clock import utc_now
from service.domain.executions import TRIGGER_FAILED, parse_utc
from service.domain.provisioning import retry_occurrence, task_id_for
from service.logs import configure_logging
from service.settings import Settings

logger = logging.getLogger("timebridge.recorder")

_container: Container | None = None


def _shared_container() -> Container:
    global _container
    if _container is None:
        configure_logging()
        _container = build_container(Settings())
    return _container


def outcome_from_destination(body: Any) -> Outcome:
    """The outcome a destination record (or a bare outcome record) describes.

    Raises MalformedRecord for anything else, including an outcome whose event the proxy could
    not read (it names no occurrence)."""
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError:
            raise MalformedRecord("the message body is not JSON") from None
    if not isinstance(body, Mapping):
        raise MalformedRecord("the message body is not a JSON object")
    if "requestContext" not in body:
        return outcome_from_record(body)  # a bare outcome record
    context = body.get("requestContext")
    condition = context.get("condition") if isinstance(context, Mapping) else None
    response = body.get("responsePayload")
    if condition == "Success" and isinstance(response, Mapping) and "status" in response:
        if response.get("occurrence_key") is None:
            error = response.get("error") or "the proxy could not read the event"
            raise MalformedRecord(f"the proxy refused the event: {str(error)[:500]}")
        return outcome_from_record(response)
    # The failure destination: the proxy raised (or the event expired before it ran).
    if isinstance(response, Mapping):
        error = f"{response.get('errorType', 'Error')}: {response.get('errorMessage', '')}"
    else:
        error = f"the proxy did not run ({condition or 'unknown condition'})"
    return outcome_from_failed_invocation(body.get("requestPayload") or {}, error, now=utc_now())


def outcome_from_dead_letter(record: Mapping[str, Any]) -> Outcome | None:
    """A message from the schedules' dead-letter queue: EventBridge Scheduler could not invoke
    the proxy (after its own retries). As AWS documents it, the body is the Input it meant to
    send (context attributes filled in) and message attributes ERROR_CODE and ERROR_MESSAGE say
    why. For a direct target (SQS, SNS, Lambda, EventBridge) the body is the target's own
    payload; the occurrence is read from the SCHEDULE_ARN and SCHEDULED_TIME attributes. None
    when the record is not such a message."""
    attributes = record.get("messageAttributes")
    if not isinstance(attributes, Mapping) or "ERROR_CODE" not in attributes:
        return None

    def text(name: str) -> str:
        value = attributes.get(name)
        return str(value.get("stringValue", "")) if isinstance(value, Mapping) else ""

    target = text("TARGET_ARN") or "the proxy"
    error = f"EventBridge Scheduler could not invoke {target}: {text('ERROR_CODE')}"
    if text("ERROR_MESSAGE"):
        error += f": {text('ERROR_MESSAGE')}"
    try:
        body = json.loads(record.get("body") or "")
    except ValueError:
        body = None  # a direct target's text message
    if not (isinstance(body, Mapping) and "task_id" in body):
        # A direct target (no proxy): the body is the target's own payload, so the occurrence
        # comes from the attributes (the schedule's name holds the task, and a retry's attempt).
        return _direct_dead_letter(text("SCHEDULE_ARN"), text("SCHEDULED_TIME"), error)
    outcome = outcome_from_failed_invocation(body, error, now=utc_now())
    return replace(outcome, error_kind="scheduler_dead_letter")


def _direct_dead_letter(schedule_arn: str, scheduled_text: str, error: str) -> Outcome:
    name = schedule_arn.rsplit("/", 1)[-1]
    task_id = task_id_for(name) if schedule_arn else None
    if task_id is None:
        raise MalformedRecord("a dead-letter message that names no Timebridge schedule")
    retry = retry_occurrence(name)
    if retry is None:
        try:
            retry = (parse_utc(scheduled_text.replace("Z", "+00:00")), 1)
        except ValueError:
            raise MalformedRecord("a dead-letter message without its scheduled time") from None
    scheduled, attempt = retry
    return Outcome(
        task_id=task_id,
        tenant_id=None,
        scheduled_time=scheduled,
        attempt=attempt,
        status=TRIGGER_FAILED,
        started_at=utc_now(),
        error_kind="scheduler_dead_letter",
        error=error[:2000],
        schedule_arn=schedule_arn,
    )


def process_batch(event: Any, container: Container) -> dict[str, Any]:
    failures: list[dict[str, str]] = []
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        raise ValueError("not an SQS event: no Records list")
    for record in records:
        message_id = record.get("messageId") if isinstance(record, Mapping) else None
        try:
            if not isinstance(record, Mapping):
                raise MalformedRecord("an SQS record is not an object")
            outcome = outcome_from_dead_letter(record) or outcome_from_destination(
                record.get("body")
            )
            container.recorder.record_outcome(outcome)
        except MalformedRecord as exc:
            logger.error("record %s refused: %s", message_id, exc)
            failures.append({"itemIdentifier": str(message_id)})
        except Exception:
            logger.exception("record %s failed; SQS will deliver it again", message_id)
            failures.append({"itemIdentifier": str(message_id)})
    return {"batchItemFailures": failures}


def handler(event: Any, context: Any) -> dict[str, Any]:
    """SQS -> recorder, with partial batch failures (ReportBatchItemFailures)."""
    return process_batch(event, _shared_container())


def sweep(container: Container) -> dict[str, Any]:
    swept = container.recorder.sweep()
    if container.triggers is not None:
        # Queued backfill occurrences, paced; about 50 s of them per one-minute run.
        budget = max(1, int(container.settings.backfill_rate_per_second * 50))
        swept["backfill_dispatched"] = container.triggers.dispatch_backfill(limit=budget)
        swept["stranded_runs_fired"] = container.triggers.redispatch_stranded()
    report = container.reconciler.run()
    container.metrics.count("timebridge_reconciler_repairs_total", report.repairs)
    container.metrics.publish_gauges(container.sessions)  # EMF on Lambda; no-op elsewhere
    return {
        **swept,
        "reconcile_repairs": report.repairs,
        "reconcile_errors": len(report.errors),
    }


def sweep_handler(event: Any, context: Any) -> dict[str, Any]:
    """Timer: callback deadlines, interrupted follow-ups, retention, reconciliation."""
    result = sweep(_shared_container())
    logger.info("sweep: %s", result)
    return result
