"""Executions: the state machine of one attempt of one occurrence, and the retry policy.

States (DESIGN.md): pending -> processing -> success | failed, or pending -> success | failed
directly; timeout when no terminal report comes in time; trigger_failed when the target could
not be reached. Terminal states refuse further callbacks. Delivery is at least once and the
proxy's outcome and the target's callbacks race, so every transition is order-proof: whatever
arrives first, the same final state results. Standard library only.
"""

from __future__ import annotations

import random
from datetime import timedelta

from service.domain.errors import CallbackClosed, InvalidRequest

PENDING = "pending"
PROCESSING = "processing"
SUCCESS = "success"
FAILED = "failed"
TIMEOUT = "timeout"
TRIGGER_FAILED = "trigger_failed"
EXECUTION_STATUSES = (PENDING, PROCESSING, SUCCESS, FAILED, TIMEOUT, TRIGGER_FAILED)
TERMINAL = frozenset({SUCCESS, FAILED, TIMEOUT, TRIGGER_FAILED})
CALLBACK_REPORTS = (PROCESSING, SUCCESS, FAILED)
OUTCOMES = (SUCCESS, FAILED, TIMEOUT, TRIGGER_FAILED)


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
