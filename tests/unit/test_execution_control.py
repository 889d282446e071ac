"""Execution control in the domain (issue 9 part B): windows, their next opening across daylight
saving, the cron expressions windows compile into, and the checks on the new task fields.
SEEDS S1-04 (execution windows, concurrency caps), S1-01 (priority), S1-14 (TASK_LOCKED)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.control import (
    concurrency_limit,
    in_window,
    next_opening,
    normalize_control,
    restrict_cron,
)
from service.domain.errors import InvalidRequest
from service.domain.schedules import compile_schedule, next_fire_times

BERLIN_WORKDAY = {
    "days": ["mon", "tue", "wed", "thu", "fri"],
    "start": "08:00",
    "end": "20:00",
    "timezone": "Europe/Berlin",
}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_the_control_fields_default_to_no_control() -> None:
    """S1-04: a task without the new fields runs as before."""
    assert normalize_control({}, partial=False) == {
        "overlap": "allow",
        "max_concurrency": None,
        "priority": 0,
        "window": None,
        "outside_window": "skip",
    }
    assert normalize_control({}, partial=True) == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"overlap": "queue"}, "overlap"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": -3}, "max_concurrency"),
        ({"max_concurrency": True}, "max_concurrency"),
        ({"priority": "high"}, "priority"),
        ({"outside_window": "later"}, "outside_window"),
        ({"window": "always"}, "window"),
        ({"window": {**BERLIN_WORKDAY, "days": ["monday"]}}, "window.days"),
        ({"window": {**BERLIN_WORKDAY, "days": []}}, "window.days"),
        ({"window": {**BERLIN_WORKDAY, "start": "8:00"}}, "window.start"),
        ({"window": {**BERLIN_WORKDAY, "end": "24:00"}}, "window.end"),
        ({"window": {**BERLIN_WORKDAY, "end": "08:00"}}, "window.end"),
        ({"window": {**BERLIN_WORKDAY, "end": "07:00"}}, "window.end"),
        ({"window": {**BERLIN_WORKDAY, "timezone": "Mars/Olympus"}}, "window.timezone"),
        ({"window": {**BERLIN_WORKDAY, "hours": 3}}, "window.hours"),
    ],
)
def test_bad_control_fields_are_refused_naming_the_field(
    body: dict[str, object], field: str
) -> None:
    """S1-04: bad windows, policies and limits give a 422 that names the field."""
    with pytest.raises(InvalidRequest) as caught:
        normalize_control(body, partial=True)
    assert caught.value.field == field


def test_window_days_are_normalized_to_lower_case_in_week_order() -> None:
    window = normalize_control(
        {"window": {**BERLIN_WORKDAY, "days": ["FRI", "mon", "fri"]}}, partial=True
    )["window"]
    assert window["days"] == ["mon", "fri"]


def test_the_concurrency_limit_follows_the_overlap_policy() -> None:
    """S1-04 / S1-14: skip and buffer_one allow one execution at a time unless told more."""
    assert concurrency_limit("allow", None) is None
    assert concurrency_limit("skip", None) == 1
    assert concurrency_limit("buffer_one", None) == 1
    assert concurrency_limit("allow", 3) == 3


def test_a_window_is_read_on_the_local_wall_clock_start_inclusive_end_exclusive() -> None:
    """S1-04: Berlin 08:00-20:00 on weekdays, in winter (UTC+1)."""
    monday = utc(2026, 11, 23)
    assert not in_window(BERLIN_WORKDAY, monday.replace(hour=6, minute=59))
    assert in_window(BERLIN_WORKDAY, monday.replace(hour=7))  # 08:00 local
    assert in_window(BERLIN_WORKDAY, monday.replace(hour=18, minute=59))
    assert not in_window(BERLIN_WORKDAY, monday.replace(hour=19))  # 20:00 local
    assert not in_window(BERLIN_WORKDAY, utc(2026, 11, 22, 12))  # Sunday


def test_a_window_inside_the_spring_forward_gap_lasts_one_real_hour() -> None:
    """S1-04, DST: 01:00-03:00 in Berlin on 2026-03-29, when 02:00 jumps to 03:00: open from
    00:00Z (01:00 CET) to 01:00Z (03:00 CEST), not two hours."""
    window = {"days": ["sun"], "start": "01:00", "end": "03:00", "timezone": "Europe/Berlin"}
    minutes = [utc(2026, 3, 28, 23) + timedelta(minutes=m) for m in range(180)]
    open_minutes = [m for m in minutes if in_window(window, m)]
    assert open_minutes[0] == utc(2026, 3, 29, 0, 0)
    assert open_minutes[-1] == utc(2026, 3, 29, 0, 59)
    assert len(open_minutes) == 60


def test_a_window_in_the_fall_back_fold_is_open_both_times() -> None:
    """S1-04, DST: 02:00-03:00 in Berlin on 2026-10-25 happens twice (CEST, then CET)."""
    window = {"days": ["sun"], "start": "02:00", "end": "03:00", "timezone": "Europe/Berlin"}
    minutes = [utc(2026, 10, 24, 23) + timedelta(minutes=m) for m in range(240)]
    assert sum(in_window(window, m) for m in minutes) == 120


def test_next_opening_is_the_next_window_start() -> None:
    """S1-04 defer: Friday 21:00 Berlin defers to Monday 08:00 Berlin."""
    friday_late = utc(2026, 11, 27, 20)
    assert next_opening(BERLIN_WORKDAY, friday_late) == utc(2026, 11, 30, 7)
    inside = utc(2026, 11, 27, 10)
    assert next_opening(BERLIN_WORKDAY, inside) == inside
    early = utc(2026, 11, 27, 5)
    assert next_opening(BERLIN_WORKDAY, early) == utc(2026, 11, 27, 7)


def test_a_defer_that_lands_in_the_spring_forward_gap_opens_when_the_clocks_resume() -> None:
    """S1-04 defer across DST: a window starting at 02:30 on 2026-03-08 in New York (02:00 jumps
    to 03:00) opens at 03:00 EDT = 07:00Z, the first instant its wall clock is past 02:30."""
    window = {"days": ["sun"], "start": "02:30", "end": "05:00", "timezone": "America/New_York"}
    assert next_opening(window, utc(2026, 3, 7, 12)) == utc(2026, 3, 8, 7, 0)


def test_a_window_entirely_inside_the_gap_does_not_open_that_day() -> None:
    """S1-04: 02:10-02:50 on the spring-forward Sunday never happens; the next Sunday does."""
    window = {"days": ["sun"], "start": "02:10", "end": "02:50", "timezone": "Europe/Berlin"}
    assert next_opening(window, utc(2026, 3, 28, 12)) == utc(2026, 4, 5, 0, 10)


def test_a_defer_that_lands_in_the_fall_back_fold_takes_the_first_of_the_two() -> None:
    """S1-04 defer across DST: 02:30 on 2026-10-25 in Berlin happens at 00:30Z (CEST) and at
    01:30Z (CET); the window opens at the first, as EventBridge fires a repeated time once."""
    window = {"days": ["sun"], "start": "02:30", "end": "04:00", "timezone": "Europe/Berlin"}
    assert next_opening(window, utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)


def _windowed(
    expression: str, zone: str, window: dict[str, object], after: datetime
) -> list[datetime]:
    return [
        t
        for t in next_fire_times(expression, timezone=zone, after=after, count=3000)
        if in_window(window, t)
    ]


@pytest.mark.parametrize(
    ("schedule", "window"),
    [
        ({"kind": "cron", "expression": "*/30 * * * *"}, BERLIN_WORKDAY),
        (
            {"kind": "cron", "expression": "15 */2 * * *"},
            {**BERLIN_WORKDAY, "days": ["sat", "sun"]},
        ),
        ({"kind": "weekly", "days": ["mon", "wed", "sat"], "time": "09:00"}, BERLIN_WORKDAY),
        (
            {"kind": "cron", "expression": "0,30 * * * *"},
            {"days": ["sun"], "start": "01:00", "end": "03:00", "timezone": "Europe/Berlin"},
        ),
        ({"kind": "daily", "time": "02:30"}, {**BERLIN_WORKDAY, "start": "02:00", "end": "04:00"}),
    ],
)
def test_a_window_compiled_into_the_cron_fires_exactly_what_the_evaluator_keeps(
    schedule: dict[str, object], window: dict[str, object]
) -> None:
    """S1-04: where a window restricts whole hours and days in the schedule's own time zone,
    the cron() it compiles into fires exactly the occurrences the window check keeps, across
    both 2026 Berlin clock changes."""
    compiled = compile_schedule({**schedule, "timezone": "Europe/Berlin"}, now=utc(2026, 3, 1))
    assert compiled.aws_expression is not None
    restricted = restrict_cron(compiled.aws_expression, "Europe/Berlin", window)
    assert restricted is not None and restricted != compiled.aws_expression
    for after in (utc(2026, 3, 20), utc(2026, 10, 18)):
        expected = _windowed(compiled.aws_expression, "Europe/Berlin", window, after)
        fired = next_fire_times(
            restricted, timezone="Europe/Berlin", after=after, count=len(expected)
        )
        assert fired == expected[: len(fired)] and len(fired) == len(expected)


@pytest.mark.parametrize(
    ("expression", "zone", "window"),
    [
        ("cron(0 9 * * ? *)", "UTC", BERLIN_WORKDAY),  # another time zone
        ("cron(0 9 * * ? *)", "Europe/Berlin", {**BERLIN_WORKDAY, "start": "08:30"}),
        ("cron(0 9 1 * ? *)", "Europe/Berlin", BERLIN_WORKDAY),  # day of month and weekdays
        ("cron(0 9 ? * 6#2 *)", "Europe/Berlin", BERLIN_WORKDAY),
        ("rate(5 minutes)", "UTC", {**BERLIN_WORKDAY, "timezone": "UTC"}),
    ],
)
def test_windows_no_cron_can_state_are_left_to_fire_time(
    expression: str, zone: str, window: dict[str, object]
) -> None:
    assert restrict_cron(expression, zone, window) is None


def test_a_window_that_excludes_every_occurrence_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        restrict_cron("cron(0 22 * * ? *)", "Europe/Berlin", BERLIN_WORKDAY)
    assert caught.value.field == "window"
