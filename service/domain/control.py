"""Execution control (SEEDS S1-01 priority, S1-04 concurrency caps and execution windows,
S1-14 TASK_LOCKED): a task's overlap policy, concurrency limit, window and priority, checked
and normalized here; when a window opens next; and the cron expression a window compiles into
when it can be stated exactly. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from proxy_lambda.window import DAY_NAMES, clock_time, in_window
from service.domain.errors import InvalidRequest
from service.domain.schedules import CronExpression, parse_aws_expression
from service.domain.schedules.aws import _DOW, parse_numeric_field

ALLOW, SKIP, BUFFER_ONE = "allow", "skip", "buffer_one"
OVERLAP_POLICIES = (ALLOW, SKIP, BUFFER_ONE)
DEFER = "defer"
OUTSIDE_WINDOW_POLICIES = (SKIP, DEFER)
TASK_LOCKED = "TASK_LOCKED"  # error code of an occurrence skipped because the task is busy
OUTSIDE_WINDOW = "OUTSIDE_WINDOW"  # error code of an occurrence outside its window
CONTROL_FIELDS = ("overlap", "max_concurrency", "priority", "window", "outside_window")
DEFAULTS: dict[str, Any] = {
    "overlap": ALLOW,
    "max_concurrency": None,
    "priority": 0,
    "window": None,
    "outside_window": SKIP,
}
MAX_PRIORITY = 1_000_000
_AWS_DAY = {name: number for number, name in enumerate(("sun", *DAY_NAMES[:6]), start=1)}

__all__ = ["in_window"]


def normalize_control(body: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """The control fields present in `body` (all of them, with defaults, unless `partial`),
    checked; InvalidRequest names the field."""
    out: dict[str, Any] = {}
    for field in CONTROL_FIELDS:
        if field not in body and partial:
            continue
        value = body.get(field, DEFAULTS[field])
        if value is None and field != "window":
            value = DEFAULTS[field]
        out[field] = _CHECKS[field](value)
    return out


def _overlap(value: Any) -> str:
    if value not in OVERLAP_POLICIES:
        raise InvalidRequest("overlap", f"must be one of {', '.join(OVERLAP_POLICIES)}")
    return str(value)


def _max_concurrency(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise InvalidRequest("max_concurrency", "must be a whole number 1-10000, or null")
    return value


def _priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PRIORITY:
        raise InvalidRequest("priority", f"must be a whole number -{MAX_PRIORITY}-{MAX_PRIORITY}")
    return value


def _outside_window(value: Any) -> str:
    if value not in OUTSIDE_WINDOW_POLICIES:
        raise InvalidRequest("outside_window", "must be 'skip' or 'defer'")
    return str(value)


def _window(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequest("window", "must be an object with days, start, end and timezone")
    unknown = set(value) - {"days", "start", "end", "timezone"}
    if unknown:
        raise InvalidRequest(f"window.{sorted(unknown)[0]}", "is not a window field")
    days = value.get("days", list(DAY_NAMES))
    if not isinstance(days, list) or not days:
        raise InvalidRequest("window.days", "must list at least one of " + ", ".join(DAY_NAMES))
    named = []
    for day in days:
        name = day.lower() if isinstance(day, str) else day
        if name not in DAY_NAMES:
            raise InvalidRequest("window.days", f"{day!r} is not one of {', '.join(DAY_NAMES)}")
        named.append(name)
    times = {}
    for field in ("start", "end"):
        text = value.get(field)
        try:
            times[field] = clock_time(text) if isinstance(text, str) else None
        except ValueError:
            times[field] = None
        if times[field] is None:
            raise InvalidRequest(f"window.{field}", "is required as HH:MM, 00:00-23:59")
    if times["end"] <= times["start"]:  # type: ignore[operator]
        raise InvalidRequest(
            "window.end", "must be after start (overnight windows: use two tasks or days)"
        )
    zone = value.get("timezone", "UTC")
    try:
        ZoneInfo(zone) if isinstance(zone, str) and zone else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    if not isinstance(zone, str) or not zone:
        raise InvalidRequest("window.timezone", f"{value.get('timezone')!r} is not an IANA zone")
    return {
        "days": sorted(set(named), key=DAY_NAMES.index),
        "start": value["start"],
        "end": value["end"],
        "timezone": zone,
    }


_CHECKS: dict[str, Any] = {
    "overlap": _overlap,
    "max_concurrency": _max_concurrency,
    "priority": _priority,
    "window": _window,
    "outside_window": _outside_window,
}


def concurrency_limit(overlap: str, max_concurrency: int | None) -> int | None:
    """How many executions of one task may run at once: `max_concurrency` when given, else one
    for `skip` and `buffer_one`, else no limit."""
    if max_concurrency is not None:
        return max_concurrency
    return None if overlap == ALLOW else 1


def _resolve(day: date, wall: Any, zone: ZoneInfo) -> datetime | None:
    """The first instant on `day` whose local wall time is at or after `wall`: the wall time
    itself (its first occurrence in a fold), or the end of a gap that swallows it."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
        return first.astimezone(UTC)
    # In a gap: walk from the earlier reading to the first minute the clocks show past it.
    probe = naive.replace(tzinfo=zone, fold=1).astimezone(UTC).replace(second=0, microsecond=0)
    for _ in range(24 * 60):
        if probe.astimezone(zone).replace(tzinfo=None) >= naive:
            return probe if probe.astimezone(zone).date() == day else None
        probe += timedelta(minutes=1)
    return None  # pragma: no cover - no zone skips a whole day at once


def next_opening(window: Mapping[str, Any], when: datetime) -> datetime:
    """`when` itself if it is inside the window, else the first instant after it at which the
    window is open (its start on the next window day, or where a clock change moves it).
    Raises ValueError if the window never opens within two weeks (it always does for a
    validated window with a day that exists)."""
    if in_window(window, when):
        return when
    zone = ZoneInfo(str(window.get("timezone") or "UTC"))
    start = clock_time(str(window["start"]))
    local_day = when.astimezone(zone).date()
    for offset in range(15):
        day = local_day + timedelta(days=offset)
        if DAY_NAMES[day.weekday()] not in window["days"]:
            continue
        opening = _resolve(day, start, zone)
        if opening is not None and opening > when and in_window(window, opening):
            return opening
    raise ValueError("the window does not open within two weeks")


def restrict_cron(
    expression: str, expression_timezone: str, window: Mapping[str, Any]
) -> str | None:
    """The AWS cron expression that fires exactly the occurrences of `expression` that fall
    inside `window`, or None when no single cron() states that: the window is in another time
    zone, starts or ends off the hour, or restricts days while the expression restricts
    days of the month. Raises InvalidRequest when no occurrence can fall inside the window."""
    if not expression.startswith("cron(") or window.get("timezone") != expression_timezone:
        return None
    start, end = clock_time(str(window["start"])), clock_time(str(window["end"]))
    if start.minute or end.minute:
        return None
    parsed = parse_aws_expression(expression)
    assert isinstance(parsed, CronExpression)
    minute, hour, dom, month, dow, year = parsed.fields
    hours = [h for h in parsed.pattern.hours if start.hour <= h < end.hour]
    if not hours:
        raise InvalidRequest("window", "no occurrence of the schedule falls inside the window")
    if set(parsed.pattern.hours) != set(hours):
        hour = ",".join(str(h) for h in hours)
    days = [_AWS_DAY[name] for name in window["days"]]
    if len(days) < 7:
        if dow == "?":
            if dom != "*":
                return None  # both day fields restricted: AWS cron cannot say it
            dom, dow = "?", ",".join(str(d) for d in sorted(days))
        else:
            if any(mark in dow.upper() for mark in ("#", "L")):
                return None
            allowed = [d for d in parse_numeric_field(dow, _DOW) if d in days]
            if not allowed:
                raise InvalidRequest(
                    "window.days", "no occurrence of the schedule falls on these days"
                )
            dow = ",".join(str(d) for d in allowed)
    return f"cron({minute} {hour} {dom} {month} {dow} {year})"
