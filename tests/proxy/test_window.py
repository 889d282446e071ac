"""The proxy and execution windows (issue 9 part B; SEEDS S1-04): the window travels in the
schedule's Input, and an occurrence outside it is reported `skipped` / OUTSIDE_WINDOW without
calling the target, so the rule holds on AWS with no database read."""

from __future__ import annotations

from typing import Any

from proxy_lambda.handler import handle
from tests.proxy.test_proxy import (  # SCHEDULED is 2026-11-23T09:00:00Z
    SCHEDULED,
    RecordingSender,
    fired,
    never_send,
    secret_settings,
)


def windowed(window: dict[str, Any], *, attempt: int = 1, policy: str = "skip") -> dict[str, Any]:
    event = fired("http://127.0.0.1:9/run", attempt=attempt)
    event["window"] = window
    event["outside_window"] = policy
    return event


def _window_around(hours: tuple[str, str]) -> dict[str, Any]:
    return {
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start": hours[0],
        "end": hours[1],
        "timezone": "UTC",
    }


def test_an_occurrence_outside_its_window_is_skipped_without_a_call() -> None:
    window = _window_around(("10:00", "10:30"))  # SCHEDULED is 09:00Z
    outcome = handle(windowed(window, policy="defer"), settings=secret_settings(), send=never_send)
    assert (outcome["status"], outcome["error_kind"]) == ("skipped", "OUTSIDE_WINDOW")
    assert "defer" in outcome["error"]
    assert outcome["occurrence_key"].endswith(f"{SCHEDULED}:1")


def test_an_occurrence_inside_its_window_is_called() -> None:
    window = _window_around(("09:00", "09:01"))
    sender = RecordingSender()
    outcome = handle(windowed(window), settings=secret_settings(), send=sender)
    assert outcome["status"] == "success" and len(sender.requests) == 1


def test_a_retry_is_not_checked_against_the_window_again() -> None:
    """The occurrence was inside its window; its retries belong to it."""
    window = _window_around(("10:00", "10:30"))  # SCHEDULED is 09:00Z
    sender = RecordingSender()
    outcome = handle(windowed(window, attempt=2), settings=secret_settings(), send=sender)
    assert outcome["status"] == "success" and len(sender.requests) == 1


def test_an_unreadable_window_is_a_trigger_failure_not_a_crash() -> None:
    event = windowed({"days": ["mon"], "start": "8 o'clock", "end": "20:00"})
    outcome = handle(event, settings=secret_settings(), send=never_send)
    assert (outcome["status"], outcome["error_kind"]) == ("trigger_failed", "malformed_event")
