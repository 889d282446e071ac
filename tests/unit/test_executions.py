"""Execution states (SEEDS S0-14, S0-15; DESIGN "Callback tokens"): order-proof transitions,
terminal states closed to callbacks, and the retry policy (S0-04, C-06)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from service.domain.errors import CallbackClosed, InvalidRequest
from service.domain.executions import (
    FAILED,
    PENDING,
    PROCESSING,
    SUCCESS,
    TIMEOUT,
    TRIGGER_FAILED,
    after_callback,
    after_deadline,
    after_outcome,
    retry_delay,
    should_retry,
)


@pytest.mark.parametrize(
    ("outcome", "callback_enabled", "expected"),
    [
        (SUCCESS, False, SUCCESS),
        (SUCCESS, True, PENDING),
        (FAILED, True, FAILED),
        (TIMEOUT, False, TIMEOUT),
        (TRIGGER_FAILED, True, TRIGGER_FAILED),
    ],
)
def test_first_outcome_sets_the_state(outcome: str, callback_enabled: bool, expected: str) -> None:
    assert after_outcome(None, outcome, callback_enabled=callback_enabled) == expected


def test_a_duplicate_outcome_changes_nothing() -> None:
    state = after_outcome(None, SUCCESS, callback_enabled=False)
    assert after_outcome(state, FAILED, callback_enabled=False) == SUCCESS


@pytest.mark.parametrize(
    ("current", "report", "expected"),
    [
        (PENDING, PROCESSING, PROCESSING),
        (PENDING, SUCCESS, SUCCESS),
        (PENDING, FAILED, FAILED),
        (PROCESSING, PROCESSING, PROCESSING),
        (PROCESSING, SUCCESS, SUCCESS),
        (PROCESSING, FAILED, FAILED),
        (None, PROCESSING, PROCESSING),  # the report came before the outcome record
    ],
)
def test_callbacks_move_pending_and_processing_executions(
    current: str | None, report: str, expected: str
) -> None:
    assert after_callback(current, report) == expected


@pytest.mark.parametrize("terminal", [SUCCESS, FAILED, TIMEOUT, TRIGGER_FAILED])
@pytest.mark.parametrize("report", [PROCESSING, SUCCESS, FAILED])
def test_terminal_executions_refuse_callbacks(terminal: str, report: str) -> None:
    with pytest.raises(CallbackClosed) as caught:
        after_callback(terminal, report)
    assert caught.value.code == "CALLBACK_CLOSED" and caught.value.status == 409


def test_unknown_reports_and_outcomes_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        after_callback(PENDING, "done")
    with pytest.raises(InvalidRequest):
        after_outcome(None, "maybe", callback_enabled=False)


@pytest.mark.parametrize("final", [SUCCESS, FAILED])
@pytest.mark.parametrize("processing_reports", [0, 1, 3])
def test_outcome_and_callbacks_end_the_same_whatever_the_order(
    final: str, processing_reports: int
) -> None:
    reports = [PROCESSING] * processing_reports + [final]
    for position in range(len(reports) + 1):  # where the proxy's outcome lands among them
        events = [*reports[:position], "outcome", *reports[position:]]
        state: str | None = None
        for event in events:
            if event == "outcome":
                state = after_outcome(state, SUCCESS, callback_enabled=True)
            else:
                state = after_callback(state, event)
        assert state == final, events


def test_the_deadline_times_out_only_unfinished_executions() -> None:
    assert after_deadline(PENDING) == TIMEOUT
    assert after_deadline(PROCESSING) == TIMEOUT
    assert after_deadline(None) == TIMEOUT
    assert after_deadline(SUCCESS) == SUCCESS
    assert after_deadline(FAILED) == FAILED


@pytest.mark.parametrize(
    ("status", "code", "attempt", "expected"),
    [
        (FAILED, 500, 1, True),
        (FAILED, 503, 5, True),
        (FAILED, 429, 1, True),
        (FAILED, 408, 1, True),
        (FAILED, 404, 1, False),
        (FAILED, 400, 1, False),
        (TIMEOUT, None, 1, True),
        (TRIGGER_FAILED, None, 2, True),
        (SUCCESS, 200, 1, False),
        (FAILED, 500, 6, False),  # six attempts = the first + five retries (S0-04)
    ],
)
def test_retry_decision(status: str, code: int | None, attempt: int, expected: bool) -> None:
    assert should_retry(status, code, attempt=attempt, max_attempts=6) is expected


def test_retry_delay_is_jittered_exponential_and_capped() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(3600, 60 * 2 ** (attempt - 1))
        for _ in range(50):
            delay = retry_delay(attempt, base_seconds=60, max_seconds=3600, rng=rng)
            assert timedelta(0) <= delay <= timedelta(seconds=ceiling)


def test_retry_delay_honours_retry_after() -> None:
    rng = random.Random(7)
    for _ in range(50):
        # The jitter ceiling for a first retry is 60 s: Retry-After's 120 s wins.
        delay = retry_delay(1, base_seconds=60, max_seconds=3600, retry_after_seconds=120, rng=rng)
        assert delay == timedelta(seconds=120)
        # Later the jittered wait may be longer; it is never shorter than Retry-After.
        late = retry_delay(8, base_seconds=60, max_seconds=3600, retry_after_seconds=5, rng=rng)
        assert timedelta(seconds=5) <= late <= timedelta(seconds=3600)
