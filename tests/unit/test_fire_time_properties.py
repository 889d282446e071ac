"""Property tests (hypothesis) of the evaluator on random AWS cron expressions in zones with and
without daylight saving, in both hemispheres: fires strictly increase, each one matches the
expression by an independent matcher written here, none falls in a DST gap, none repeats a
wall time in a DST overlap, and no matching minute is missed. rate() fires are exactly one
interval apart."""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.schedules import next_fire_times

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # a 30-minute daylight-saving shift
    "America/Santiago",
    "Pacific/Auckland",
    "Asia/Seoul",
    "Asia/Kolkata",
]
NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]


def numeric_field(low: int, high: int) -> st.SearchStrategy[Field]:
    """'*', a value, a list, a range, 'a/n' or '*/n', with the set it stands for."""
    every = frozenset(range(low, high + 1))

    def star() -> Field:
        return Field("*", every)

    single = st.integers(low, high).map(lambda v: Field(str(v), frozenset({v})))
    listed = st.sets(st.integers(low, high), min_size=2, max_size=4).map(
        lambda vs: Field(",".join(str(v) for v in sorted(vs)), frozenset(vs))
    )
    ranged = st.tuples(st.integers(low, high), st.integers(low, high)).map(
        lambda ab: Field(f"{min(ab)}-{max(ab)}", frozenset(range(min(ab), max(ab) + 1)))
    )
    stepped = st.tuples(st.integers(low, high), st.integers(1, min(high - low, 12))).map(
        lambda an: Field(f"{an[0]}/{an[1]}", frozenset(range(an[0], high + 1, an[1])))
    )
    return st.one_of(st.just(star()), single, listed, ranged, stepped)


DayMatcher = Callable[[date], bool]


def _aws_dow(day: date) -> int:
    return (day.weekday() + 1) % 7 + 1  # SUN=1 ... SAT=7


def _last(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def _nearest_weekday(day: date, n: int) -> bool:
    last = _last(day)
    if n > last:
        return False
    target = date(day.year, day.month, n)
    if target.weekday() == 5:  # Saturday
        target = target + timedelta(days=2) if n == 1 else target - timedelta(days=1)
    elif target.weekday() == 6:  # Sunday
        target = target - timedelta(days=2) if n == last else target + timedelta(days=1)
    return day == target


def _last_weekday(day: date) -> bool:
    target = date(day.year, day.month, _last(day))
    while target.weekday() >= 5:
        target -= timedelta(days=1)
    return day == target


@st.composite
def day_fields(draw: st.DrawFn) -> tuple[str, str, DayMatcher]:
    """(day-of-month, day-of-week, matcher): exactly one of the two is '?'."""
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["numeric", "L", "LW", "W"]))
        if kind == "L":
            return "L", "?", lambda d: d.day == _last(d)
        if kind == "LW":
            return "LW", "?", _last_weekday
        if kind == "W":
            n = draw(st.integers(1, 31))
            return f"{n}W", "?", lambda d: _nearest_weekday(d, n)
        dom = draw(numeric_field(1, 31))
        return dom.text, "?", lambda d: d.day in dom.values
    kind = draw(st.sampled_from(["numeric", "names", "nth", "last_of", "L"]))
    if kind == "nth":
        weekday, nth = draw(st.integers(1, 7)), draw(st.integers(1, 5))
        return (
            "?",
            f"{weekday}#{nth}",
            lambda d: _aws_dow(d) == weekday and (d.day - 1) // 7 + 1 == nth,
        )
    if kind == "last_of":
        weekday = draw(st.integers(1, 7))
        return "?", f"{weekday}L", lambda d: _aws_dow(d) == weekday and d.day + 7 > _last(d)
    if kind == "L":
        return "?", "L", lambda d: _aws_dow(d) == 7
    if kind == "names":
        a, b = sorted(draw(st.tuples(st.integers(1, 7), st.integers(1, 7))))
        days = frozenset(range(a, b + 1))
        return (
            "?",
            f"{NAMES[a - 1]}-{NAMES[b - 1]}" if a != b else NAMES[a - 1],
            (lambda d: _aws_dow(d) in days),
        )
    dow = draw(numeric_field(1, 7).filter(lambda f: "/" not in f.text))  # no '/' in AWS DOW
    return "?", dow.text, lambda d: _aws_dow(d) in dow.values


@st.composite
def cron_cases(draw: st.DrawFn) -> tuple[str, Field, Field, Field, Field, DayMatcher]:
    minutes = draw(numeric_field(0, 59))
    hours = draw(numeric_field(0, 23))
    months = draw(numeric_field(1, 12))
    if draw(st.booleans()):
        years = Field("*", frozenset(range(1970, 2200)))
    else:
        first = draw(st.integers(2026, 2040))
        years = Field(f"{first}-2199", frozenset(range(first, 2200)))
    dom, dow, matcher = draw(day_fields())
    text = f"cron({minutes.text} {hours.text} {dom} {months.text} {dow} {years.text})"
    return text, minutes, hours, months, years, matcher


afters = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@PROPERTY_SETTINGS
@given(case=cron_cases(), zone=st.sampled_from(ZONES), after=afters)
def test_cron_fires_increase_match_and_respect_daylight_saving(
    case: tuple[str, Field, Field, Field, Field, DayMatcher], zone: str, after: datetime
) -> None:
    text, minutes, hours, months, years, matcher = case
    fires = next_fire_times(text, timezone=zone, after=after, count=12)
    tz = ZoneInfo(zone)
    walls = []
    previous = after
    for fire in fires:
        assert fire.tzinfo is not None and fire.utcoffset() == timedelta(0)
        assert fire > previous, (text, zone, fires)
        previous = fire
        wall = fire.astimezone(tz).replace(tzinfo=None)
        # Matches the expression, by a matcher that does not use the evaluator's code.
        assert wall.minute in minutes.values and wall.hour in hours.values, (text, wall)
        assert wall.month in months.values and wall.year in years.values, (text, wall)
        assert matcher(wall.date()), (text, wall)
        assert wall.second == 0
        # Not in a gap: the wall time maps back to the same instant (it exists)...
        assert wall.replace(tzinfo=tz).astimezone(UTC) == fire, (text, zone, wall)
        walls.append(wall)
    # ...and in an overlap a wall time fires once: the first of its two instants.
    assert len(walls) == len(set(walls)), (text, zone, walls)
    for fire, wall in zip(fires, walls, strict=True):
        assert wall.replace(tzinfo=tz, fold=0).astimezone(UTC) == fire
    # Nothing is missed: every minute up to the last fire (at most two days) whose wall time
    # matches, exists and is the first of its kind, is among the fires.
    if fires:
        fired = set(fires)
        minute = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        stop = min(fires[-1], after + timedelta(days=2))
        while minute <= stop:
            wall = minute.astimezone(tz).replace(tzinfo=None)
            if (
                wall.minute in minutes.values
                and wall.hour in hours.values
                and wall.month in months.values
                and wall.year in years.values
                and matcher(wall.date())
                and wall.replace(tzinfo=tz, fold=0).astimezone(UTC) == minute
            ):
                assert minute in fired, (text, zone, "missed", minute)
            minute += timedelta(minutes=1)


@PROPERTY_SETTINGS
@given(
    value=st.integers(1, 500),
    unit=st.sampled_from(["minute", "hour", "day"]),
    start=afters,
    after=afters,
    zone=st.sampled_from(ZONES),
)
def test_rate_fires_are_exactly_one_interval_apart(
    value: int, unit: str, start: datetime, after: datetime, zone: str
) -> None:
    expression = f"rate({value} {unit}{'' if value == 1 else 's'})"
    step = timedelta(**{f"{unit}s": value})
    fires = next_fire_times(expression, timezone=zone, after=after, count=5, start=start)
    assert len(fires) == 5
    assert fires[0] > after and fires[0] >= start
    assert (fires[0] - start) % step == timedelta(0)
    assert fires[0] - step <= max(after, start - step)
    assert all(b - a == step for a, b in itertools.pairwise(fires))


def _transitions_2027(zone: str) -> list[datetime]:
    """UTC hours in 2027 right after which the zone's offset changed (found by stepping)."""
    tz = ZoneInfo(zone)
    found = []
    cursor = datetime(2027, 1, 1, tzinfo=UTC)
    offset = cursor.astimezone(tz).utcoffset()
    while cursor.year == 2027:
        cursor += timedelta(minutes=30)
        current = cursor.astimezone(tz).utcoffset()
        if current != offset:
            found.append(cursor)
            offset = current
    return found


DST_ZONES = ["America/New_York", "Europe/Berlin", "Australia/Sydney", "Australia/Lord_Howe"]
TRANSITIONS = {zone: _transitions_2027(zone) for zone in DST_ZONES}


@PROPERTY_SETTINGS
@given(
    case=cron_cases(),
    zone=st.sampled_from(DST_ZONES),
    which=st.integers(0, 1),
    hours_before=st.integers(0, 30),
)
def test_fires_around_daylight_saving_changes_skip_gaps_and_never_repeat(
    case: tuple[str, Field, Field, Field, Field, DayMatcher],
    zone: str,
    which: int,
    hours_before: int,
) -> None:
    text, minutes, hours, months, years, matcher = case
    change = TRANSITIONS[zone][which]
    after = change - timedelta(hours=hours_before)
    tz = ZoneInfo(zone)
    fires = next_fire_times(text, timezone=zone, after=after, count=40)
    walls = [fire.astimezone(tz).replace(tzinfo=None) for fire in fires]
    assert len(walls) == len(set(walls)), (text, zone, walls)
    for fire, wall in zip(fires, walls, strict=True):
        # A wall time the clocks skip is never moved to a neighbouring one: every fire's own
        # wall time matches the expression...
        assert wall.minute in minutes.values and wall.hour in hours.values, (text, wall)
        assert wall.month in months.values and wall.year in years.values, (text, wall)
        assert matcher(wall.date()), (text, wall)
        # ...and a repeated wall time fires at its first instant only.
        assert wall.replace(tzinfo=tz, fold=0).astimezone(UTC) == fire, (text, zone, wall)
    assert fires == sorted(fires) and len(set(fires)) == len(fires)


expression_noise = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda kind, body: f"{kind}({body})",
        st.sampled_from(["cron", "rate", "at"]),
        st.text(alphabet="0123456789 */-,?LW#JANMOSUTHFRIDYECPGVlwx:.", max_size=30),
    ),
)


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(text=expression_noise)
def test_any_text_parses_or_is_refused_with_invalid_schedule(text: str) -> None:
    """No input makes the parser or the compiler fail in any other way (no traceback)."""
    from service.domain.errors import InvalidSchedule
    from service.domain.schedules import (
        AtExpression,
        CronExpression,
        RateExpression,
        compile_schedule,
        parse_aws_expression,
    )

    try:
        parsed = parse_aws_expression(text)
    except InvalidSchedule as exc:
        assert exc.field and exc.reason
    else:
        assert isinstance(parsed, AtExpression | RateExpression | CronExpression)
    try:
        compiled = compile_schedule(
            {"kind": "cron", "expression": text}, now=datetime(2027, 1, 1, tzinfo=UTC)
        )
    except InvalidSchedule as exc:
        assert exc.field == "schedule.expression" and exc.reason
    else:
        assert compiled.mode in ("native", "chained")
