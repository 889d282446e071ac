"""Calendar patterns: sets of minutes, hours, days, months and years, walked in wall-clock order.

AWS cron, unix cron and the presets all compile to a `CalendarPattern`; they differ only in how a
month's matching days are chosen, which is the `days` function. Walking nested sorted tuples with
bisect is what makes the evaluator fast: no per-minute stepping, no re-parsing.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from service.domain.schedules._zones import is_utc, resolve_local, to_local_naive

DaysFn = Callable[[int, int], tuple[int, ...]]

# EventBridge Scheduler's cron year range; every calendar schedule ends with it.
MIN_YEAR = 1970
MAX_YEAR = 2199

# The largest jump of a UTC offset at a transition (Antarctica/Troll: 2 h), with margin.
_MAX_SHIFT = timedelta(hours=3)


def last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def aws_weekday(year: int, month: int, day: int) -> int:
    """Day of week in AWS numbering: SUN=1 ... SAT=7."""
    return (calendar.weekday(year, month, day) + 1) % 7 + 1


@dataclass(frozen=True)
class CalendarPattern:
    """Wall-clock fire times: every (year, month, day, hour, minute) the sets allow."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    years: tuple[int, ...]
    day_rule: DaysFn = field(compare=False)
    _cache: dict[tuple[int, int], tuple[int, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def days(self, year: int, month: int) -> tuple[int, ...]:
        key = (year, month)
        found = self._cache.get(key)
        if found is None:
            found = self.day_rule(year, month)
            self._cache[key] = found
        return found

    def iter_local(self, start: datetime) -> Iterator[tuple[int, int, int, int, int]]:
        """Wall times (y, m, d, h, min) at or after the naive `start`, in order."""
        if start.second or start.microsecond:
            start = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        sy, smo, sd, sh, smi = start.year, start.month, start.day, start.hour, start.minute
        minutes, hours, months = self.minutes, self.hours, self.months
        for y in self.years[bisect_left(self.years, sy) :]:
            first_year = y == sy
            for mo in months[bisect_left(months, smo) :] if first_year else months:
                first_month = first_year and mo == smo
                days = self.days(y, mo)
                for d in days[bisect_left(days, sd) :] if first_month else days:
                    first_day = first_month and d == sd
                    for h in hours[bisect_left(hours, sh) :] if first_day else hours:
                        if first_day and h == sh:
                            for mi in minutes[bisect_left(minutes, smi) :]:
                                yield y, mo, d, h, mi
                        else:
                            for mi in minutes:
                                yield y, mo, d, h, mi


def calendar_fire_times(
    pattern: CalendarPattern,
    zone: ZoneInfo,
    *,
    after: datetime,
    count: int,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[datetime]:
    """The next `count` UTC instants strictly after `after` (all aware UTC), bounded by the
    inclusive `start`/`end`, with EventBridge's daylight-saving rules in `zone`."""
    out: list[datetime] = []
    if count <= 0:
        return out
    lower = after
    if start is not None and start > after:
        lower = start - timedelta(microseconds=1)
    if is_utc(zone):
        for y, mo, d, h, mi in pattern.iter_local(lower.replace(tzinfo=None)):
            instant = datetime(y, mo, d, h, mi, tzinfo=UTC)
            if instant <= lower:
                continue
            if end is not None and instant > end:
                break
            out.append(instant)
            if len(out) == count:
                break
        return out
    walls = (
        datetime(y, mo, d, h, mi)
        for y, mo, d, h, mi in pattern.iter_local(wall_clock_start(lower, zone))
    )
    return take_fires(walls, zone, lower=lower, count=count, end=end)


def wall_clock_start(lower: datetime, zone: ZoneInfo) -> datetime:
    """Where to start walking wall time for fires after `lower`: a little early, because around
    a fall-back the wall clock runs twice."""
    return to_local_naive(lower, zone) - _MAX_SHIFT


def take_fires(
    walls: Iterable[datetime],
    zone: ZoneInfo,
    *,
    lower: datetime,
    count: int,
    end: datetime | None,
) -> list[datetime]:
    """The first `count` instants after `lower` (and not after `end`) of increasing wall times,
    with EventBridge's rules: skipped wall times do not fire, repeated ones fire once."""
    out: list[datetime] = []
    for wall in walls:
        resolved = resolve_local(wall, zone)
        if resolved is None or resolved <= lower:
            continue
        if end is not None and resolved > end:
            break
        out.append(resolved)
        if len(out) == count:
            break
    return out
