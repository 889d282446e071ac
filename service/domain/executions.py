"""Executions: the state machine of one attempt of one occurrence, and the retry policy.

States (DESIGN.md): pending -> processing -> success | failed, or pending -> success | failed
directly; timeout when no terminal report comes in time; trigger_failed when the target could
not be reached. Terminal states refuse further callbacks. Delivery is at least once and the
proxy's outcome and the target's callbacks race, so every transition is order-proof: whatever
arrives first, the same final state results. Standard library only.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from service.domain.errors import CallbackClosed, InvalidRequest

PENDING = "pending"
PROCESSING = "processing"
SUCCESS = "success"
FAILED = "failed"
TIMEOUT = "timeout"
TRIGGER_FAILED = "trigger_failed"
# An occurrence not run, with its reason in error_kind: TASK_LOCKED or OUTSIDE_WINDOW (execution
# control), DEPENDENCY_FAILED (a dependency's latest execution had not succeeded). Terminal,
# never retried, never alerted.
SKIPPED = "skipped"
EXECUTION_STATUSES = (PENDING, PROCESSING, SUCCESS, FAILED, TIMEOUT, TRIGGER_FAILED, SKIPPED)
TERMINAL = frozenset({SUCCESS, FAILED, TIMEOUT, TRIGGER_FAILED, SKIPPED})
RUNNING = (PENDING, PROCESSING)  # what counts against overlap and concurrency limits
CALLBACK_REPORTS = (PROCESSING, SUCCESS, FAILED)
OUTCOMES = (SUCCESS, FAILED, TIMEOUT, TRIGGER_FAILED, SKIPPED)


def after_outcome(current: str | None, outcome: str, *, callback_enabled: bool) -> str:
    """The execution's state once the proxy's outcome record arrives.

    `current` is None when nothing was recorded yet. With callbacks on, a delivered call
    (`success`) only means the target accepted the work: the execution waits in `pending` for
    its report, unless a report already came (then that state stands).
    """
    if outcome not in OUTCOMES:
        raise InvalidRequest("outcome.status", f"must be one of {', '.join(OUTCOMES)}")
    if current in TERMINAL:
        return current  # a duplicate outcome, or the callback finished it first
    if outcome == SUCCESS and callback_enabled:
        return current or PENDING
    return outcome


def after_callback(current: str | None, report: str) -> str:
    """The state after the target reports `processing`, `success` or `failed`.

    A report may arrive before the outcome record (`current` None counts as pending); a
    repeated `processing` is harmless; a terminal execution raises CallbackClosed.
    """
    if report not in CALLBACK_REPORTS:
        raise InvalidRequest("status", f"must be one of {', '.join(CALLBACK_REPORTS)}")
    if current in TERMINAL:
        raise CallbackClosed(f"the execution already ended as {current}")
    return report


def after_deadline(current: str | None) -> str:
    """A callback that never came: pending or processing executions time out."""
    return TIMEOUT if current in (None, PENDING, PROCESSING) else current


def should_retry(status: str, status_code: int | None, *, attempt: int, max_attempts: int) -> bool:
    """Retry failures that may pass next time (5xx, 408, 429, timeouts, unreachable targets),
    never a 4xx the target meant, and never past `max_attempts` attempts in all."""
    if attempt >= max_attempts or status not in (FAILED, TIMEOUT, TRIGGER_FAILED):
        return False
    if status == FAILED and status_code is not None:
        return status_code >= 500 or status_code in (408, 429)
    return True


def retry_delay(
    attempt: int,
    *,
    base_seconds: int,
    max_seconds: int,
    retry_after_seconds: float | None = None,
    rng: random.Random | None = None,
) -> timedelta:
    """Exponential backoff with full jitter before attempt `attempt + 1`, never shorter than
    the target's Retry-After and never longer than `max_seconds` (unless Retry-After asks)."""
    ceiling = min(max_seconds, base_seconds * 2 ** max(0, attempt - 1))
    delay = (rng or random).uniform(0, ceiling)
    if retry_after_seconds is not None:
        delay = max(delay, retry_after_seconds)
    return timedelta(seconds=delay)


def format_scheduled_time(moment: datetime) -> str:
    """The occurrence's time as the proxy writes it in the occurrence key: UTC with a Z, to the
    second, or to the microsecond when it has a fraction (manual runs)."""
    moment = moment.astimezone(UTC)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def occurrence_key(task_id: str, scheduled_time: datetime, attempt: int) -> str:
    return f"{task_id}:{format_scheduled_time(scheduled_time)}:{attempt}"


def parse_occurrence_key(key: str) -> tuple[str, datetime, int]:
    """(task id, scheduled time, attempt) from "<task id>:<UTC time>:<attempt>"; ValueError
    when the key is not one."""
    task_id, sep, rest = key.partition(":")
    stamp, sep2, attempt_text = rest.rpartition(":")
    if not (sep and sep2 and task_id and attempt_text.isdigit() and attempt_text.isascii()):
        raise ValueError("not an occurrence key")
    moment = parse_utc(stamp)
    attempt = int(attempt_text)
    if attempt < 1:
        raise ValueError("the attempt must be at least 1")
    return task_id, moment, attempt


def parse_utc(text: str) -> datetime:
    """An ISO 8601 time with an offset or Z, as an aware UTC datetime; ValueError otherwise."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} carries no offset")
    return moment.astimezone(UTC)


def lateness_seconds(planned: datetime, started: datetime) -> float:
    """How long after its planned time an attempt started (0 when early: clocks differ)."""
    return max(0.0, (started - planned).total_seconds())


def is_late(
    late_seconds: float, *, threshold_seconds: int, flexible_window_minutes: int | None
) -> bool:
    """Late beyond the alert threshold, counting a flexible window as allowed delay."""
    allowed = threshold_seconds + 60 * (flexible_window_minutes or 0)
    return late_seconds > allowed
