"""The service's one clock. Code takes a `Clock` argument so tests can freeze time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock: an aware datetime in UTC."""
    return datetime.now(UTC)
