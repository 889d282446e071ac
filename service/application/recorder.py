"""The recorder: outcomes, callbacks and deadlines become executions, and executions move tasks.

Every way an attempt ends goes through here: the proxy's outcome record (from SQS on AWS, called
in-process locally), the target's callback, and the sweeper's deadline. Delivery is at least
once and these three race, so each entry point is idempotent and order-proof:

- the execution is upserted by its occurrence key (task id, scheduled time, attempt), under a
  row lock; a second copy of a record that was already applied changes nothing;
- what follows an ended attempt (a retry schedule, the next chained occurrence, the task's
  completion) is decided in the same transaction that ends it and marked `followups_pending`;
  carrying it out talks to the scheduler, after the commit, and clears the mark. A crash or a
  throttle in between leaves the mark, and a redelivery or the sweeper finishes the job with the
  same derived schedule names and ClientTokens, so nothing is done twice.

Retry schedules are one-time `at()` schedules named from the occurrence
(`retry_schedule_name`), carrying the original scheduled time in their Input, so every attempt
of one occurrence shares it and the receiver sees the same occurrence with a higher attempt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Alert, Execution, Task
from service.adapters.db.session import insert_rows
from service.application import triggers
from service.application.tasks import _compiled, control_of, definition_for, input_for
from service.application.triggers import Invoker
from service.domain import control, targets
from service.domain import executions as states
from service.domain import tasks as rules
from service.domain.clock import Clock, utc_now
from service.domain.errors import Conflict, InvalidRequest, NotFound
from service.domain.provisioning import (
    ScheduleDefinition,
    SchedulerBackend,
    ScheduleTarget,
    client_token_for,
    retry_schedule_name,
)
from service.domain.schedules import at_expression
from service.domain.triggers import TRIGGER_KINDS
from service.metrics import Metrics

logger = logging.getLogger("timebridge.recorder")

ONE_TIME_KINDS = ("immediate", "once", "delay")
SCHEDULE, RETRY, MANUAL = "schedule", "retry", "manual"
# Runs started by events and chains (issue 9) are not retried (a retry's Input could not carry
# the event) and, like backfilled occurrences, do not move their task's schedule.
EVENT_TRIGGERED = ("event", "chain")
NOT_RETRIED = (MANUAL, *EVENT_TRIGGERED)
NOT_ADVANCING = (*NOT_RETRIED, "backfill")
BODY_EXCERPT = 4096


class MalformedRecord(ValueError):
    """A record the recorder cannot use; on AWS it goes back to the queue and on to the DLQ."""


class AlertSink(Protocol):
    def publish(self, alert: Mapping[str, Any]) -> None: ...


class LogAlertSink:
    """Locally an alert is a log line (and a row that `GET /v1/alerts` lists)."""

    def publish(self, alert: Mapping[str, Any]) -> None:
        logger.warning("alert %s: %s", alert["kind"], alert["message"])


@dataclass(frozen=True)
class Outcome:
    """One attempt's result as the proxy reported it (or as a failed invocation implies)."""

    task_id: str
    tenant_id: str | None
    scheduled_time: datetime
    attempt: int
    status: str
    started_at: datetime | None
    status_code: int | None = None
    latency_ms: int | None = None
    response_headers: Mapping[str, str] | None = None
    response_body: str | None = None
    response_body_truncated: bool = False
    error_kind: str | None = None
    error: str | None = None
    schedule_arn: str | None = None
    delivery_attempt: int | None = None
    retry_after_seconds: float | None = None
    published: Mapping[str, Any] | None = None  # an `event` target's {"topic", "payload"}

    @property
    def occurrence_key(self) -> str:
        return states.occurrence_key(self.task_id, self.scheduled_time, self.attempt)


def outcome_from_record(record: Mapping[str, Any]) -> Outcome:
    """Read the proxy's outcome record (proxy_lambda.handler's format). Raises MalformedRecord."""
    if not isinstance(record, Mapping):
        raise MalformedRecord("the outcome record is not a JSON object")
    key = record.get("occurrence_key")
    if not isinstance(key, str):
        raise MalformedRecord("the outcome record has no occurrence_key")
    try:
        task_id, scheduled, attempt = states.parse_occurrence_key(key)
    except ValueError as exc:
        raise MalformedRecord(f"occurrence_key {key[:120]!r}: {exc}") from None
    status = record.get("status")
    if status not in states.OUTCOMES:
        raise MalformedRecord(f"status {status!r} is not one of {', '.join(states.OUTCOMES)}")
    headers = record.get("response_headers") or {}
    if not isinstance(headers, Mapping):
        raise MalformedRecord("response_headers must be an object")
    body = record.get("response_body")
    tenant = record.get("tenant_id")
    return Outcome(
        task_id=task_id,
        tenant_id=tenant if isinstance(tenant, str) else None,
        scheduled_time=scheduled,
        attempt=attempt,
        status=status,
        started_at=_time_or_none(record.get("started_at")),
        status_code=_int_or_none(record.get("status_code")),
        latency_ms=_int_or_none(record.get("latency_ms")),
        response_headers={str(k): str(v) for k, v in headers.items()},
        response_body=body[:BODY_EXCERPT] if isinstance(body, str) else None,
        response_body_truncated=record.get("response_body_truncated") is True,
        error_kind=_text_or_none(record.get("error_kind"), 32),
        error=_text_or_none(record.get("error"), 2000),
        schedule_arn=_text_or_none(record.get("schedule_arn"), 512),
        delivery_attempt=_int_or_none(record.get("delivery_attempt")),
        retry_after_seconds=_retry_after(headers.get("retry-after")),
        published=_published(record.get("published")),
    )


def outcome_from_failed_invocation(
    request: Mapping[str, Any], error: str, *, now: datetime
) -> Outcome:
    """The proxy itself failed (or the event aged out): the attempt is a trigger failure, read
    from the Input the proxy was given. Raises MalformedRecord when that is unreadable too."""
    if not isinstance(request, Mapping):
        raise MalformedRecord("the request payload is not a JSON object")
    task_id = request.get("task_id")
    attempt = request.get("attempt")
    context = request.get("context")
    scheduled_text = context.get("scheduled_time") if isinstance(context, Mapping) else None
    if not isinstance(task_id, str) or type(attempt) is not int or attempt < 1:
        raise MalformedRecord("the request payload names no task and attempt")
    if not isinstance(scheduled_text, str):
        raise MalformedRecord("the request payload has no scheduled time")
    try:
        scheduled = states.parse_utc(scheduled_text)
    except ValueError as exc:
        raise MalformedRecord(f"scheduled time: {exc}") from None
    tenant = request.get("tenant_id")
    return Outcome(
        task_id=task_id,
        tenant_id=tenant if isinstance(tenant, str) else None,
        scheduled_time=scheduled,
        attempt=attempt,
        status=states.TRIGGER_FAILED,
        started_at=now,
        error_kind="proxy_error",
        error=error[:2000],
    )


def new_execution(
    task: Task, scheduled: datetime, attempt: int, now: datetime, *, trigger: str = SCHEDULE
) -> Execution:
    """A pending execution row for one attempt of one occurrence."""
    return Execution(
        id=str(uuid.uuid4()),
        task_id=task.id,
        tenant_id=task.tenant_id,
        scheduled_time=scheduled,
        attempt=attempt,
        status=states.PENDING,
        trigger=trigger,
        outcome_recorded=False,
        followups_pending=False,
        response_body_truncated=False,
        created_at=now,
        updated_at=now,
    )


def callback_deadline(task: Task, now: datetime) -> datetime:
    """When an execution of a callback-enabled task times out without a terminal report."""
    return now + timedelta(seconds=int(task.callback.get("timeout_seconds") or 3600))


def _store_alert(session: Session, alert: Alert) -> bool:
    """Add the alert unless one with its dedupe key is stored already; True when added."""
    if session.scalar(select(Alert.id).where(Alert.dedupe_key == alert.dedupe_key)):
        return False
    session.add(alert)
    return True


class Recorder:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        backend: SchedulerBackend,
        *,
        clock: Clock = utc_now,
        alerts: AlertSink | None = None,
        lateness_threshold_seconds: int = 120,
        retention_days: int = 90,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        hold_schedules: bool = False,
        tenant_cap: int | None = None,
    ) -> None:
        self.metrics = metrics
        # Issue 9: on AWS (no engine to ask at fire time) a task at its concurrency limit has
        # its schedule DISABLED while its executions run; the local engine gates exactly.
        self.hold_schedules = hold_schedules
        self.tenant_cap = tenant_cap  # running executions per tenant, held the same way
        self.sessions = sessions
        self.backend = backend
        self.clock = clock
        self.alerts = alerts or LogAlertSink()
        self.lateness_threshold_seconds = lateness_threshold_seconds
        self.retention_days = retention_days
        self.rng = rng or random.Random()
        # Starts runs for events and chains (set by the container: the run path's invoker).
        self.invoker: Invoker | None = None

    # --- outcomes ------------------------------------------------------------------------------

    def record_outcome(self, outcome: Outcome) -> str:
        """Apply one outcome; returns the execution id. Idempotent per occurrence key.

        Raises MalformedRecord when the record names a task that does not exist or belongs to
        another tenant (it must not vanish silently: on AWS it goes on to the DLQ)."""
        return self.record_outcomes([outcome])[0]

    def record_outcomes(
        self,
        outcomes: Sequence[Outcome],
        *,
        also: Callable[[Session], None] | None = None,
    ) -> list[str]:
        """Apply several outcomes in one transaction (the local engine's path: one commit for
        a batch of deliveries, with `also` run in the same transaction, e.g. to clear the
        engine's outbox). Returns the execution ids in order. If the batch meets a conflict
        (a concurrent copy of one record), each outcome is applied on its own instead."""
        now = self.clock()
        published: list[dict[str, Any]] = []
        observed: list[tuple[str, int | None, float | None]] = []
        results: list[tuple[str, bool]] = []
        try:
            with self.sessions() as session:
                # A batch reads its tasks and existing executions in two queries and inserts
                # its new executions in one statement, instead of a few statements each.
                batch = len(outcomes) > 1
                tasks, known = self._prefetch(session, outcomes) if batch else ([], None)
                fresh: list[Execution] | None = [] if batch else None
                with session.no_autoflush:
                    for outcome in outcomes:
                        results.append(
                            self._apply_one(
                                session, outcome, now, published, observed, known, fresh
                            )
                        )
                if fresh:
                    insert_rows(session, fresh)  # before the alerts that name them
                del tasks  # held until here: the identity map keeps only weak references
                if also is not None:
                    also(session)
                session.commit()
        except IntegrityError:
            if len(outcomes) == 1:
                return self.record_outcomes(outcomes, also=also)  # the row exists now: update
            ids = [self.record_outcome(outcome) for outcome in outcomes]
            if also is not None:
                with self.sessions() as session:
                    also(session)
                    session.commit()
            return ids
        if self.metrics is not None:
            for values in observed:
                self.metrics.observe_execution(*values)
        self._publish(published)
        if self.hold_schedules:
            self._sync_holds(list(dict.fromkeys(outcome.task_id for outcome in outcomes)))
        for execution_id, pending in results:
            if not pending:
                continue
            if len(outcomes) == 1:
                self.carry_out(execution_id)  # a failure here is the caller's to retry
            else:
                self._carry_out_safely(execution_id)  # the sweeper finishes what fails
        return [execution_id for execution_id, _ in results]

    def _apply_one(
        self,
        session: Session,
        outcome: Outcome,
        now: datetime,
        published: list[dict[str, Any]],
        observed: list[tuple[str, int | None, float | None]],
        known: dict[tuple[str, datetime, int], Execution] | None = None,
        fresh: list[Execution] | None = None,
    ) -> tuple[str, bool]:
        """One outcome inside the caller's transaction: (execution id, follow-ups pending).
        `known` holds the batch's executions already read (see `_prefetch`); with `fresh`,
        new executions are collected there for the caller to insert, not added."""
        task = session.get(Task, outcome.task_id)
        if task is None:
            raise MalformedRecord(f"no task {outcome.task_id}")
        if outcome.tenant_id is not None and outcome.tenant_id != task.tenant_id:
            raise MalformedRecord(f"task {outcome.task_id} is not tenant {outcome.tenant_id}")
        key = (task.id, outcome.scheduled_time, outcome.attempt)
        if known is not None:
            execution = known.get(key)
        else:
            execution = self._locked_execution(
                session, task, outcome.scheduled_time, outcome.attempt
            )
        if execution is None:
            current: str | None = None
            execution = new_execution(
                task,
                outcome.scheduled_time,
                outcome.attempt,
                now,
                trigger=RETRY if outcome.attempt > 1 else SCHEDULE,
            )
            if fresh is not None:
                fresh.append(execution)
            else:
                session.add(execution)
            if known is not None:
                known[key] = execution  # a second copy in this batch finds it
        elif execution.outcome_recorded:
            return execution.id, execution.followups_pending  # a duplicate: nothing changes
        else:  # a callback, or a manual run, made the row first
            current = execution.status
        self._apply_outcome(session, task, execution, outcome, now, published)
        if outcome.published is not None and outcome.status == states.SUCCESS:
            # An `event` target fired: publish within the tenant, once per execution.
            started = triggers.publish_in(
                session,
                task.tenant_id,
                str(outcome.published["topic"]),
                outcome.published.get("payload"),
                key_prefix=f"tgt:{execution.id}",
                depth=(execution.trigger_depth or 0) + 1,
                now=now,
                source=execution.id,
            )
            execution.followups_pending = execution.followups_pending or bool(started)
        callbacks = bool(task.callback.get("enabled"))
        execution.status = states.after_outcome(current, outcome.status, callback_enabled=callbacks)
        if execution.status in states.TERMINAL:
            execution.finished_at = execution.finished_at or now
        elif callbacks and execution.callback_deadline is None:
            execution.callback_deadline = callback_deadline(task, now)
        self._decide(
            session,
            task,
            execution,
            now,
            published,
            first_outcome=True,
            became_terminal=current not in states.TERMINAL,
            retry_after=outcome.retry_after_seconds,
        )
        observed.append((execution.status, execution.latency_ms, execution.late_seconds))
        return execution.id, execution.followups_pending

    def _apply_outcome(
        self,
        session: Session,
        task: Task,
        execution: Execution,
        outcome: Outcome,
        now: datetime,
        published: list[dict[str, Any]],
    ) -> None:
        execution.outcome_recorded = True
        execution.started_at = outcome.started_at or now
        execution.status_code = outcome.status_code
        execution.latency_ms = outcome.latency_ms
        execution.error_kind = outcome.error_kind
        execution.error = outcome.error
        execution.response_headers = dict(outcome.response_headers or {})
        execution.response_body = outcome.response_body
        execution.response_body_truncated = outcome.response_body_truncated
        execution.schedule_arn = outcome.schedule_arn
        execution.delivery_attempt = outcome.delivery_attempt
        execution.updated_at = now
        if execution.planned_at is None:
            execution.planned_at = self._planned_at(session, execution)
        execution.late_seconds = states.lateness_seconds(execution.planned_at, execution.started_at)
        if (
            execution.trigger in (SCHEDULE, RETRY)
            and outcome.status != states.SKIPPED
            and states.is_late(
                execution.late_seconds,
                threshold_seconds=self.lateness_threshold_seconds,
                flexible_window_minutes=task.flexible_window_minutes,
            )
        ):
            published.append(
                self._alert(
                    session,
                    task,
                    execution,
                    "late",
                    f"task {task.name} started {execution.late_seconds:.0f} s after "
                    f"{execution.planned_at:%Y-%m-%dT%H:%M:%SZ} (threshold "
                    f"{self.lateness_threshold_seconds} s)",
                    now,
                )
            )

    def _planned_at(self, session: Session, execution: Execution) -> datetime:
        """When this attempt was meant to start: its occurrence for the first attempt, the
        retry time the previous attempt chose for a retry."""
        if execution.attempt > 1:
            previous = session.scalar(
                select(Execution.retry_at).where(
                    Execution.task_id == execution.task_id,
                    Execution.scheduled_time == execution.scheduled_time,
                    Execution.attempt == execution.attempt - 1,
                )
            )
            if previous is not None:
                return previous
        return execution.scheduled_time

    def record_missed(
        self, task_id: str, first: datetime, last: datetime, count: int, *, complete: bool
    ) -> None:
        """Occurrences that passed while nothing could fire them (the local engine was down
        longer than its grace window): one alert, not a run."""
        now = self.clock()
        with self.sessions() as session:
            task = session.get(Task, task_id)
            if task is None:
                return
            how_many = str(count) if complete else "more than 1000"
            span = f"{states.format_scheduled_time(first)} to {states.format_scheduled_time(last)}"
            message = f"task {task.name}: {how_many} occurrences from {span} were missed"
            alert = Alert(
                id=str(uuid.uuid4()),
                tenant_id=task.tenant_id,
                task_id=task.id,
                execution_id=None,
                kind="missed",
                message=message,
                details={
                    "first": states.format_scheduled_time(first),
                    "last": states.format_scheduled_time(last),
                    "count": count if complete else None,
                },
                dedupe_key=f"missed:{task.id}:{states.format_scheduled_time(first)}"[:255],
                created_at=now,
            )
            if not _store_alert(session, alert):
                return
            session.commit()
        self._publish(
            [
                {
                    "kind": "missed",
                    "message": message,
                    "tenant_id": task.tenant_id,
                    "task_id": task.id,
                }
            ]
        )

    # --- callbacks -----------------------------------------------------------------------------

    def report_callback(
        self,
        key: str,
        report: str,
        *,
        output: Any = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """The target's report for the occurrence a verified callback token names.

        Raises NotFound when the task is unknown or has callbacks off, CallbackClosed (409) when
        the execution already ended, InvalidRequest for a report that is not one."""
        if report not in states.CALLBACK_REPORTS:
            raise InvalidRequest("status", f"must be one of {', '.join(states.CALLBACK_REPORTS)}")
        try:
            task_id, scheduled, attempt = states.parse_occurrence_key(key)
        except ValueError:
            raise NotFound("unknown callback token") from None
        now = self.clock()
        published: list[dict[str, Any]] = []
        with self.sessions() as session:
            task = session.get(Task, task_id)
            if task is None or not task.callback.get("enabled"):
                raise NotFound("unknown callback token")
            execution = self._locked_execution(session, task, scheduled, attempt)
            if execution is None:  # the report beat the outcome record
                execution = new_execution(
                    task, scheduled, attempt, now, trigger=RETRY if attempt > 1 else SCHEDULE
                )
                execution.callback_deadline = callback_deadline(task, now)
                session.add(execution)
                current: str | None = None
            else:
                current = execution.status
            execution.status = states.after_callback(current, report)
            execution.updated_at = now
            if output is not None:
                execution.output = {**(execution.output or {}), "result": output}
            if error is not None:
                execution.error = error[:2000]
                execution.error_kind = "callback_failed"
            if execution.status in states.TERMINAL:
                execution.finished_at = now
                self._decide(session, task, execution, now, published, first_outcome=False)
            execution_id = execution.id
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return self.report_callback(key, report, output=output, error=error)
            view = {"execution_id": execution_id, "status": execution.status}
        self._publish(published)
        self.carry_out(execution_id)
        if self.hold_schedules:
            self._sync_holds([task_id])
        return view

    # --- the sweeper ---------------------------------------------------------------------------

    def sweep(self, *, limit: int = 500) -> dict[str, int]:
        """Time out executions whose callback never came, finish interrupted follow-ups, prune
        history past retention. Safe to run beside itself and the recorder."""
        now = self.clock()
        timed_out = 0
        with self.sessions() as session:
            overdue = list(
                session.scalars(
                    select(Execution.id)
                    .where(
                        Execution.status.in_((states.PENDING, states.PROCESSING)),
                        Execution.callback_deadline < now,
                    )
                    .limit(limit)
                )
            )
        for execution_id in overdue:
            if self._time_out(execution_id, now):
                timed_out += 1
        with self.sessions() as session:
            stuck = list(
                session.scalars(
                    select(Execution.id).where(Execution.followups_pending).limit(limit)
                )
            )
        finished = sum(1 for execution_id in stuck if self._carry_out_safely(execution_id))
        if self.hold_schedules:
            with self.sessions() as session:
                held = list(
                    session.scalars(
                        select(Task.id).where(Task.held_since.is_not(None)).limit(limit)
                    )
                )
            self._sync_holds(held)  # released here if what held them ended elsewhere
        pruned = self.prune(now - timedelta(days=self.retention_days))
        return {"timed_out": timed_out, "followups_finished": finished, "pruned": pruned}

    def _time_out(self, execution_id: str, now: datetime) -> bool:
        published: list[dict[str, Any]] = []
        with self.sessions() as session:
            execution = session.get(Execution, execution_id, with_for_update=True)
            if execution is None or execution.status in states.TERMINAL:
                return False
            if execution.callback_deadline is None or execution.callback_deadline >= now:
                return False
            task = session.get(Task, execution.task_id)
            assert task is not None
            execution.status = states.after_deadline(execution.status)
            execution.error_kind = "callback_timeout"
            execution.error = "no terminal callback arrived before the deadline"
            execution.finished_at = now
            execution.updated_at = now
            self._decide(session, task, execution, now, published, first_outcome=False)
            task_id = task.id
            session.commit()
        self._publish(published)
        self._carry_out_safely(execution_id)
        if self.hold_schedules:
            self._sync_holds([task_id])
        return True

    def prune(self, before: datetime) -> int:
        """Delete executions (and alerts) created before `before`."""
        with self.sessions() as session:
            result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                delete(Execution).where(
                    Execution.created_at < before, Execution.followups_pending.is_(False)
                )
            )
            gone = result.rowcount
            session.execute(delete(Alert).where(Alert.created_at < before))
            session.commit()
        return int(gone or 0)

    # --- deciding what follows -----------------------------------------------------------------

    def _decide(
        self,
        session: Session,
        task: Task,
        execution: Execution,
        now: datetime,
        published: list[dict[str, Any]],
        *,
        first_outcome: bool,
        became_terminal: bool = True,
        retry_after: float | None = None,
    ) -> None:
        """What follows this execution, decided once, in the transaction that changes it:
        the next chained occurrence on the first outcome of a scheduled first attempt, and
        a retry, an alert or the task's end when the execution has just ended."""
        chained = task.mode == "chained" and task.kind != "fixed_delay"
        if first_outcome and chained and execution.trigger == SCHEDULE and execution.attempt == 1:
            execution.followups_pending = True  # provision the next occurrence now
        if execution.status not in states.TERMINAL or not became_terminal:
            return
        live = task.status in rules.LIVE_STATUSES or task.status == rules.PROVISIONING
        retry = task.retry or rules.DEFAULT_RETRY
        if (
            live
            and execution.trigger not in NOT_RETRIED
            and states.should_retry(
                execution.status,
                execution.status_code,
                attempt=execution.attempt,
                max_attempts=int(retry["max_attempts"]),
            )
        ):
            delay = states.retry_delay(
                execution.attempt,
                base_seconds=int(retry["base_delay_seconds"]),
                max_seconds=int(retry["max_delay_seconds"]),
                retry_after_seconds=retry_after,
                rng=self.rng,
            )
            # at() has whole seconds: round up, and never less than a second from now.
            execution.retry_at = (max(delay, timedelta(seconds=1)) + now).replace(
                microsecond=0
            ) + timedelta(seconds=1)
            execution.followups_pending = True
            return
        # Final: publish task.<name>.succeeded|failed, start completed chains, and let the
        # tasks that depend on this one re-read their gate (carried out after the commit).
        if triggers.on_final(session, task, execution, now) or triggers.dependents(session, task):
            execution.followups_pending = True
        if execution.status == states.SKIPPED:
            self._decide_skipped(task, execution)
            follows = chained or task.kind in ONE_TIME_KINDS or task.kind == "fixed_delay"
            if execution.trigger != MANUAL and live and follows:
                execution.followups_pending = True
            return
        if execution.status != states.SUCCESS:
            published.append(
                self._alert(
                    session,
                    task,
                    execution,
                    "final_failure",
                    f"task {task.name}: attempt {execution.attempt} for "
                    f"{states.format_scheduled_time(execution.scheduled_time)} ended "
                    f"{execution.status}"
                    + (f" ({execution.status_code})" if execution.status_code else "")
                    + "; no retries left",
                    now,
                ),
            )
        if execution.trigger in NOT_ADVANCING or not live:
            return
        if task.kind == "fixed_delay" or task.kind in ONE_TIME_KINDS or chained:
            execution.followups_pending = True  # the next run, or the task's completion

    def _decide_skipped(self, task: Task, execution: Execution) -> None:
        """An occurrence outside its window with `outside_window: defer` runs at the window's
        next opening, as its own occurrence (attempt 1 at that instant): several deferred
        occurrences, or one that meets a scheduled one there, become one run."""
        if execution.error_kind != control.OUTSIDE_WINDOW or task.outside_window != control.DEFER:
            return
        if not task.window or execution.attempt != 1:
            return
        opening = control.next_opening(task.window, execution.scheduled_time)
        execution.error = f"outside the execution window; deferred to {opening:%Y-%m-%dT%H:%M:%SZ}"
        compiled = _compiled(json.dumps(task.schedule, sort_keys=True), task.created_at)
        if compiled.next_fire_times(opening - timedelta(microseconds=1), 1) == [opening]:
            return  # the schedule fires at the opening anyway: the deferred run merges into it
        execution.retry_at = opening
        execution.followups_pending = True

    # --- carrying it out -----------------------------------------------------------------------

    def _carry_out_safely(self, execution_id: str) -> bool:
        try:
            self.carry_out(execution_id)
        except Exception:  # the mark stays; the next sweep tries again
            logger.exception("follow-ups of execution %s failed; will retry", execution_id)
            return False
        return True

    def carry_out(self, execution_id: str) -> None:
        """Do what `_decide` marked: idempotent, so a second run finds nothing left to do."""
        with self.sessions() as session:
            execution = session.get(Execution, execution_id, with_for_update=True)
            if execution is None or not execution.followups_pending:
                return
            task = session.get(Task, execution.task_id, with_for_update=True)
            assert task is not None
            now = self.clock()
            live = task.status in rules.LIVE_STATUSES or task.status == rules.PROVISIONING
            if live and execution.retry_at is not None and execution.status == states.SKIPPED:
                self._provision_run(task, execution.retry_at, execution.retry_at)  # deferred
                if task.mode == "chained" and task.kind != "fixed_delay":
                    self._advance(task, execution, now)
            elif live and execution.retry_at is not None:
                self._provision_retry(task, execution)
            elif live and execution.trigger not in NOT_ADVANCING:
                self._advance(task, execution, now)
            self._refresh_gates(session, task)
            started = self._triggered_by(session, execution)
            # Runs this execution started are fired after the commit; the mark stays until
            # they are, so a crash in between is finished by a redelivery or the sweeper.
            execution.followups_pending = bool(started)
            session.commit()
        if started:
            triggers.dispatch(self.sessions, self.invoker, started)
            with self.sessions() as session:
                session.execute(
                    update(Execution)
                    .where(Execution.id == execution_id)
                    .values(followups_pending=False)
                )
                session.commit()

    def _triggered_by(self, session: Session, execution: Execution) -> list[str]:
        """Runs this execution started (by its outcome topic, a chain or its event target)
        that have not reported yet: fired after the commit (again after a crash: at least
        once, with the same occurrence key)."""
        return list(
            session.scalars(
                select(Execution.id)
                .where(
                    Execution.source_execution_id == execution.id,
                    Execution.outcome_recorded.is_(False),
                    Execution.status == states.PENDING,
                )
                .order_by(Execution.created_at, Execution.id)
            )
        )

    def _refresh_gates(self, session: Session, task: Task) -> None:
        """Open or close the dependency gate of the tasks that depend on `task`; a changed gate
        is pushed into the schedule's Input, so the proxy skips (or calls) without a DB read."""
        # Read everything first, unflushed: on SQLite a flush here would hold the write lock
        # that the local backend's own session needs for the updates below.
        with session.no_autoflush:
            gates = [
                (dependent, triggers.dependency_gate(session, dependent))
                for dependent in triggers.dependents(session, task)
            ]
        for dependent, gate in gates:
            if gate == dependent.dependency_gate:
                continue
            dependent.dependency_gate = gate
            dependent.version += 1
            dependent.updated_at = self.clock()
            if dependent.aws_expression is None or dependent.kind in TRIGGER_KINDS:
                continue
            with contextlib.suppress(NotFound):  # gone: the reconciler recreates it with the gate
                dependent.schedule_arn = self.backend.update(definition_for(dependent))

    def _provision_retry(self, task: Task, execution: Execution) -> None:
        assert execution.retry_at is not None
        attempt = execution.attempt + 1
        name = retry_schedule_name(task.id, execution.scheduled_time, attempt)
        scheduled_text = states.format_scheduled_time(execution.scheduled_time)
        direct: ScheduleTarget | None = None
        if targets.is_direct(task.target):
            direct, input_text = targets.direct_schedule(
                task.target,
                task_id=task.id,
                task_name=task.name,
                scheduled_time=scheduled_text,
                attempt=attempt,
            )
        else:
            input_text = input_for(task, attempt=attempt, scheduled_time=scheduled_text)
        definition = ScheduleDefinition(
            name=name,
            expression=at_expression(execution.retry_at),
            expression_timezone="UTC",
            input=input_text,
            target=direct,
            enabled=True,
            flexible_window_minutes=None,
            delete_after_completion=True,
            description=f"Timebridge retry {attempt} of task {task.id}"[:512],
        )
        with contextlib.suppress(Conflict):  # made by an earlier run of these follow-ups
            self.backend.create(definition, client_token=name)

    def _provision_run(self, task: Task, scheduled: datetime, at: datetime) -> None:
        """A one-time schedule that runs occurrence `scheduled` (attempt 1) at `at`: a deferred
        occurrence, or the one buffered while a held schedule was disabled. Named from the
        occurrence, so asking twice makes one schedule."""
        name = retry_schedule_name(task.id, scheduled, 1)
        definition = ScheduleDefinition(
            name=name,
            expression=at_expression(at),
            expression_timezone="UTC",
            input=rules.schedule_input(
                task_id=task.id,
                tenant_id=task.tenant_id,
                target=task.target,
                callback=task.callback,
                attempt=1,
                scheduled_time=states.format_scheduled_time(scheduled),
                task_name=task.name,
                timezone=task.timezone,
                control=control_of(task),
            ),
            enabled=True,
            flexible_window_minutes=None,
            delete_after_completion=True,
            description=f"Timebridge deferred run of task {task.id}"[:512],
        )
        with contextlib.suppress(Conflict):  # made by an earlier run of these follow-ups
            self.backend.create(definition, client_token=name)

    # --- holding a schedule at the concurrency limit (AWS) -------------------------------------

    def _sync_holds(self, task_ids: Sequence[str]) -> None:
        """Hold or release these tasks' schedules, then, with a tenant cap, every schedule of
        their tenants that the cap now holds or releases. Failures are logged: the sweeper
        looks at held tasks again."""
        for task_id in task_ids:
            self._sync_hold_safely(task_id)
        if self.tenant_cap is None or not task_ids:
            return
        with self.sessions() as session:
            tenants = set(session.scalars(select(Task.tenant_id).where(Task.id.in_(task_ids))))
        for tenant_id in tenants:
            with self.sessions() as session:
                full = self._tenant_running(session, tenant_id) >= self.tenant_cap
                others = select(Task.id).where(Task.tenant_id == tenant_id)
                if full:  # every schedule of the tenant that is not held yet
                    others = others.where(
                        Task.held_since.is_(None),
                        Task.status == rules.SCHEDULED,
                        Task.mode == "native",
                        Task.kind.not_in(ONE_TIME_KINDS),
                    )
                else:
                    others = others.where(Task.held_since.is_not(None))
                affected = [t for t in session.scalars(others) if t not in task_ids]
            for task_id in affected:
                self._sync_hold_safely(task_id)

    @staticmethod
    def _tenant_running(session: Session, tenant_id: str) -> int:
        running = session.scalar(
            select(func.count())
            .select_from(Execution)
            .where(Execution.tenant_id == tenant_id, Execution.status.in_(states.RUNNING))
        )
        return int(running or 0)

    def _sync_hold_safely(self, task_id: str) -> None:
        try:
            self.sync_hold(task_id)
        except Exception:  # the sweeper looks at held tasks again
            logger.exception("holding or releasing the schedule of task %s failed", task_id)

    def sync_hold(self, task_id: str) -> bool | None:
        """Make the task's schedule match its concurrency limit: DISABLED (held) while as many
        executions as the limit allows are running (pending or processing: awaiting their
        callback), or while its tenant has `tenant_cap` running, ENABLED again once neither
        holds. The task's status stays `scheduled`. On
        release, a `buffer_one` task whose schedule skipped occurrences while held runs the
        latest of them once. Returns the new hold state, or None when nothing changed."""
        now = self.clock()
        with self.sessions() as session:
            task = session.get(Task, task_id, with_for_update=True)
            if task is None:
                return None
            limit = control.concurrency_limit(task.overlap, task.max_concurrency)
            if limit is None and task.held_since is None and self.tenant_cap is None:
                return None  # no limit, nothing held: the common case costs no count
            tenant_full = self.tenant_cap is not None and (
                self._tenant_running(session, task.tenant_id) >= self.tenant_cap
            )
            running = session.scalar(
                select(func.count())
                .select_from(Execution)
                .where(Execution.task_id == task_id, Execution.status.in_(states.RUNNING))
            )
            holdable = (
                task.status == rules.SCHEDULED
                and task.mode == "native"
                and task.kind not in ONE_TIME_KINDS
            )
            at_limit = limit is not None and int(running or 0) >= limit
            hold = holdable and (at_limit or tenant_full)
            if hold == (task.held_since is not None):
                return None
            buffered: datetime | None = None
            if not hold and task.held_since is not None and task.overlap == control.BUFFER_ONE:
                compiled = _compiled(json.dumps(task.schedule, sort_keys=True), task.created_at)
                skipped = [t for t in compiled.next_fire_times(task.held_since, 1000) if t <= now]
                buffered = skipped[-1] if skipped else None
            task.held_since = now if hold else None
            task.version += 1
            task.updated_at = now
            if holdable or not hold:
                with contextlib.suppress(NotFound):
                    task.schedule_arn = self.backend.update(definition_for(task))
            if buffered is not None:
                self._provision_run(task, buffered, now + timedelta(seconds=2))
            session.commit()
            return hold

    def _advance(self, task: Task, execution: Execution, now: datetime) -> None:
        """Move the task past this occurrence: chained tasks get their next `at()` schedule,
        one-time tasks (and chained ones with nothing left) complete or fail."""
        ended = execution.status in states.TERMINAL
        if task.kind in ONE_TIME_KINDS:
            if ended:
                self._finish(task, execution, now)
            return
        if task.next_fire_at is not None and task.next_fire_at > execution.scheduled_time:
            return  # a later occurrence already moved the task on
        if task.kind == "fixed_delay":
            if not ended:
                return
            compiled = _compiled(json.dumps(task.schedule, sort_keys=True), task.created_at)
            seconds = compiled.fixed_delay_seconds or 0
            upcoming: datetime | None = (execution.finished_at or now) + timedelta(seconds=seconds)
            if upcoming is not None and task.end_at is not None and upcoming > task.end_at:
                upcoming = None
        else:
            compiled = _compiled(json.dumps(task.schedule, sort_keys=True), task.created_at)
            following = compiled.next_fire_times(execution.scheduled_time, 1)
            upcoming = following[0] if following else None
        if upcoming is None:
            task.next_fire_at = None
            if ended:
                self._finish(task, execution, now)
            return
        task.next_fire_at = upcoming.replace(microsecond=0)
        task.aws_expression = at_expression(upcoming)
        task.version += 1
        task.updated_at = now
        definition = definition_for(task)
        try:
            task.schedule_arn = self.backend.update(definition)
        except NotFound:
            task.schedule_arn = self.backend.create(
                definition, client_token=client_token_for(task.id, task.version)
            )

    def _finish(self, task: Task, execution: Execution, now: datetime) -> None:
        done = (states.SUCCESS, states.SKIPPED)  # a skipped one-time run is not a failure
        task.status = rules.COMPLETED if execution.status in done else rules.FAILED
        task.enabled = False
        task.next_fire_at = None
        task.updated_at = now
        task.version += 1
        self.backend.delete(task.schedule_name)  # one-time ones are gone already (DELETE)

    # --- helpers -------------------------------------------------------------------------------

    def _prefetch(
        self, session: Session, outcomes: Sequence[Outcome]
    ) -> tuple[list[Task], dict[tuple[str, datetime, int], Execution]]:
        """Load the batch's tasks and lock its executions that exist already, keyed by
        occurrence. The caller holds on to the tasks while it works: the session's identity
        map keeps only weak references, and `session.get` finds them there."""
        task_ids = sorted({outcome.task_id for outcome in outcomes})
        times = sorted({outcome.scheduled_time for outcome in outcomes})
        tasks = list(session.scalars(select(Task).where(Task.id.in_(task_ids))))
        existing = session.scalars(
            select(Execution)
            .where(Execution.task_id.in_(task_ids), Execution.scheduled_time.in_(times))
            .with_for_update()
        )
        return tasks, {(row.task_id, row.scheduled_time, row.attempt): row for row in existing}

    def _locked_execution(
        self, session: Session, task: Task, scheduled: datetime, attempt: int
    ) -> Execution | None:
        return session.scalar(
            select(Execution)
            .where(
                Execution.task_id == task.id,
                Execution.scheduled_time == scheduled,
                Execution.attempt == attempt,
            )
            .with_for_update()
        )

    def _alert(
        self,
        session: Session,
        task: Task,
        execution: Execution,
        kind: str,
        message: str,
        now: datetime,
    ) -> dict[str, Any]:
        key = states.occurrence_key(task.id, execution.scheduled_time, execution.attempt)
        details = {
            "task_name": task.name,
            "occurrence_key": key,
            "status": execution.status,
            "late_seconds": execution.late_seconds,
        }
        alert = Alert(
            id=str(uuid.uuid4()),
            tenant_id=task.tenant_id,
            task_id=task.id,
            execution_id=execution.id,
            kind=kind,
            message=message,
            details=details,
            dedupe_key=f"{kind}:{key}"[:255],
            created_at=now,
        )
        _store_alert(session, alert)
        return {"kind": kind, "message": message, "tenant_id": task.tenant_id, **details}

    def _publish(self, alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            try:
                self.alerts.publish(alert)
            except Exception:  # the row is stored; a failed publish must not undo the record
                logger.exception("publishing alert %s failed", alert["kind"])


def _time_or_none(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return states.parse_utc(value)
    except ValueError:
        return None


def _int_or_none(value: Any) -> int | None:
    return value if type(value) is int else None


def _text_or_none(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _published(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping) and isinstance(value.get("topic"), str):
        return {"topic": value["topic"], "payload": value.get("payload")}
    return None


def _retry_after(value: Any) -> float | None:
    """Retry-After in seconds (the delta form; an HTTP date is read relative to nothing and
    ignored), capped at a day."""
    if isinstance(value, str) and value.strip().isdigit():
        return min(float(value.strip()), 86400.0)
    return None
