"""Execution windows at fire time (SEEDS S1-04): is an occurrence inside its task's window?

The window travels in the schedule's Input (`window`), so the proxy decides without reading the
database. Standard library only: this module is imported on every cold start. Validation and
the "when does the window open next" arithmetic live in service.domain.control, which uses this
check too, so both sides agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time
from typing import Any

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()


def clock_time(text: str) -> time:
    """ "HH:MM" (00:00-23:59) as a time; ValueError otherwise."""
    hours, sep, minutes = text.partition(":")
    if not (sep and len(hours) == 2 and len(minutes) == 2 and (hours + minutes).isdigit()):
        raise ValueError(f"{text!r} is not HH:MM")
    return time(int(hours), int(minutes))


def in_window(window: Mapping[str, Any], when: datetime) -> bool:
    """True when the aware instant `when` falls on one of the window's days (local to its time
    zone) between `start` (inclusive) and `end` (exclusive), on the local wall clock. A local time
    the clocks skip never occurs, so it is never inside; a repeated one is inside both times."""
    from zoneinfo import ZoneInfo  # only tasks with a window pay for it (cold start)

    local = when.astimezone(ZoneInfo(str(window.get("timezone") or "UTC")))
    if DAY_NAMES[local.weekday()] not in window.get("days", DAY_NAMES):
        return False
    wall = local.time().replace(tzinfo=None)
    return clock_time(str(window["start"])) <= wall < clock_time(str(window["end"]))
