"""Next fire times of AWS expressions, with EventBridge Scheduler's semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.domain.errors import InvalidSchedule
from service.domain.schedules._calendar import calendar_fire_times
from service.domain.schedules._zones import as_utc, load_zone, resolve_local
from service.domain.schedules.aws import (
    AtExpression,
    AwsExpression,
    CronExpression,
    RateExpression,
    parse_aws_expression,
)


def next_fire_times(
    expression: str,
    *,
    timezone: str = "UTC",
    after: datetime,
    count: int = 5,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[datetime]:
    """The next `count` fire instants of an AWS expression, strictly after `after`.

    Returns aware UTC datetimes in increasing order; an empty list when the schedule never fires
    again. `timezone` is the schedule's ScheduleExpressionTimezone. `start` and `end` are the
    inclusive StartDate/EndDate bounds; like AWS, a one-time at() ignores them, and a rate() is
    anchored at `start` (its first fire) or, without one, at `after` (its creation). Naive
    datetimes are read as UTC. Raises InvalidSchedule for a bad expression, zone or bounds.
    """
    parsed = parse_aws_expression(expression)
    zone_name = timezone
    load_zone(zone_name, "timezone")
    if count < 0:
        raise InvalidSchedule("count", "must not be negative")
    after_utc = as_utc(after)
    start_utc = None if start is None else as_utc(start)
    end_utc = None if end is None else as_utc(end)
    if start_utc is not None and end_utc is not None and end_utc < start_utc:
        raise InvalidSchedule("end", "is before start")
    return fire_times(parsed, zone_name, after=after_utc, count=count, start=start_utc, end=end_utc)


def fire_times(
    parsed: AwsExpression,
    zone_name: str,
    *,
    after: datetime,
    count: int,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[datetime]:
    """`next_fire_times` for an already parsed expression; all datetimes aware UTC."""
    zone = load_zone(zone_name, "timezone")
    if count <= 0:
        return []
    if isinstance(parsed, AtExpression):
        instant = resolve_local(parsed.when, zone)
        return [instant] if instant is not None and instant > after else []
    if isinstance(parsed, RateExpression):
        return rate_fire_times(parsed.interval, after=after, count=count, start=start, end=end)
    assert isinstance(parsed, CronExpression)
    return calendar_fire_times(parsed.pattern, zone, after=after, count=count, start=start, end=end)


_LAST_INSTANT = datetime(9999, 12, 31, tzinfo=UTC) - timedelta(days=1)


def rate_fire_times(
    interval: timedelta,
    *,
    after: datetime,
    count: int,
    start: datetime | None,
    end: datetime | None,
) -> list[datetime]:
    """Fires at start + k * interval (k >= 0), anchored at `after` when there is no start."""
    anchor = start if start is not None else after
    steps = 0 if anchor > after else (after - anchor) // interval + 1
    out: list[datetime] = []
    while len(out) < count:
        if (_LAST_INSTANT - anchor) / interval < steps:
            break
        instant = anchor + interval * steps
        if end is not None and instant > end:
            break
        out.append(instant)
        steps += 1
    return out
