"""Every AWS expression rule, valid and invalid, and exact fire instants for the tricky parts:
daylight saving in both hemispheres, L, LW, W, #, Feb 29 and the year limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.domain.errors import InvalidSchedule
from service.domain.schedules import (
    AtExpression,
    CronExpression,
    RateExpression,
    next_fire_times,
    parse_aws_expression,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "cron(0 9 * * ? *)",
        "cron(0 9 ? * * *)",
        "cron(59 23 31 12 ? 2199)",
        "cron(0 0 1 1 ? 1970)",
        "cron(0/15 * * * ? *)",
        "cron(*/15 * * * ? *)",
        "cron(1/10 * * * ? *)",
        "cron(5-50/5 * * * ? *)",
        "cron(0,15,30,45 0-6,18-23 * * ? *)",
        "cron(0 9 ? * MON-FRI *)",
        "cron(0 9 ? * mon-fri *)",
        "cron(0 9 ? * 2-6 *)",
        "cron(0 9 ? * SUN,SAT *)",
        "cron(0 9 ? JAN-MAR * *)",
        "cron(0 9 ? jan,jul * *)",
        "cron(0 9 1 1/3 ? *)",
        "cron(0 9 L * ? *)",
        "cron(0 9 LW * ? *)",
        "cron(0 9 15W * ? *)",
        "cron(0 9 1W * ? *)",
        "cron(0 9 ? * L *)",
        "cron(0 9 ? * 6L *)",
        "cron(0 9 ? * FRIL *)",
        "cron(0 9 ? * 3#2 *)",
        "cron(0 9 ? * TUE#5 *)",
        "cron(0 9 1-15/2 * ? *)",
        "cron(0 9 * * ? 2027-2030)",
        "cron(0 9 * * ? 2026/2)",
        "cron(0 9 * * ? 2026,2028)",
        "cron(00 09 * * ? *)",
    ],
)
def test_valid_cron_expressions_are_accepted(text: str) -> None:
    parsed = parse_aws_expression(text)
    assert isinstance(parsed, CronExpression)
    assert parsed.text == text


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("cron(0 9 * * *)", "cron", "six fields"),
        ("cron(0 0 9 * * ? *)", "cron", "six fields"),
        ("cron()", "cron", "six fields"),
        ("cron( 0 9 * * ? *)", "cron", "six fields"),
        ("cron(60 9 * * ? *)", "minutes", "out of range 0-59"),
        ("cron(-1 9 * * ? *)", "minutes", "not a value"),
        ("cron(0 24 * * ? *)", "hours", "out of range 0-23"),
        ("cron(0 9 0 * ? *)", "day-of-month", "out of range 1-31"),
        ("cron(0 9 32 * ? *)", "day-of-month", "out of range 1-31"),
        ("cron(0 9 * 0 ? *)", "month", "out of range 1-12"),
        ("cron(0 9 * 13 ? *)", "month", "out of range 1-12"),
        ("cron(0 9 * JANUARY ? *)", "month", "not a value"),
        ("cron(0 9 ? * 0 *)", "day-of-week", "SUN is 1"),
        ("cron(0 9 ? * 8 *)", "day-of-week", "out of range 1-7"),
        ("cron(0 9 ? * MONDAY *)", "day-of-week", "not a value"),
        ("cron(0 9 * * ? 1969)", "year", "out of range 1970-2199"),
        ("cron(0 9 * * ? 2200)", "year", "out of range 1970-2199"),
        ("cron(0 9 * * * *)", "day-of-week", "one of them must be '?'"),
        ("cron(0 9 1 * MON *)", "day-of-week", "one of them must be '?'"),
        ("cron(0 9 ? * ? *)", "day-of-month", "'?' in both"),
        ("cron(? 9 * * ? *)", "minutes", "only"),
        ("cron(0 9 * ? ? *)", "month", "not allowed"),
        ("cron(0 9 * * ? ?)", "year", "not allowed"),
        ("cron(0 9 L-3 * ? *)", "day-of-month", "stand alone"),
        ("cron(0 9 1,L * ? *)", "day-of-month", "stand alone"),
        ("cron(0 9 1W,15 * ? *)", "day-of-month", "stand alone"),
        ("cron(0 9 1-5W * ? *)", "day-of-month", "stand alone"),
        ("cron(0 9 ? * 3#1,6#3 *)", "day-of-week", "single entry"),
        ("cron(0 9 ? * 3#6 *)", "day-of-week", "1-5"),
        ("cron(0 9 ? * 3#0 *)", "day-of-week", "1-5"),
        ("cron(0 9 ? * 2,6L *)", "day-of-week", "stand alone"),
        ("cron(0 9 ? * */2 *)", "day-of-week", "'/' is not allowed"),
        ("cron(0 9 ? * FRI-MON *)", "day-of-week", "backwards"),
        ("cron(0 22-2 * * ? *)", "hours", "backwards"),
        ("cron(0/0 9 * * ? *)", "minutes", "positive"),
        ("cron(0/60 9 * * ? *)", "minutes", "above 59"),
        ("cron(0 0/24 * * ? *)", "hours", "above 23"),
        ("cron(0 9 1/32 * ? *)", "day-of-month", "above 31"),
        ("cron(0 9 * 1/13 ? *)", "month", "above 12"),
        ("cron(0,,5 9 * * ? *)", "minutes", "empty list entry"),
        ("cron(0 9 * * ? *", "cron", "closed by ')'"),
        ("CRON(0 9 * * ? *)", "expression", "not an AWS expression"),
        ("cron(" + "0," * 130 + "0 9 * * ? *)", "expression", "AWS allows 256"),
    ],
)
def test_invalid_cron_names_the_field_and_reason(text: str, field: str, words: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        parse_aws_expression(text)
    assert caught.value.field == field
    assert words in caught.value.reason, caught.value.reason


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("rate(1 minute)", 1, "minute"),
        ("rate(5 minutes)", 5, "minute"),
        ("rate(1 hour)", 1, "hour"),
        ("rate(12 hours)", 12, "hour"),
        ("rate(1 day)", 1, "day"),
        ("rate(30 days)", 30, "day"),
    ],
)
def test_valid_rates(text: str, value: int, unit: str) -> None:
    parsed = parse_aws_expression(text)
    assert parsed == RateExpression(value, unit)
    assert parsed.text == text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("rate(1 minutes)", "singular"),
        ("rate(5 minute)", "plural"),
        ("rate(0 minutes)", "positive"),
        ("rate(05 minutes)", "positive"),
        ("rate(-5 minutes)", "must be rate"),
        ("rate(1.5 hours)", "must be rate"),
        ("rate(5 seconds)", "minute(s), hour(s) or day(s)"),
        ("rate(2 weeks)", "minute(s), hour(s) or day(s)"),
        ("rate(5  minutes)", "must be rate"),
        ("rate(5 Minutes)", "must be rate"),
        ("rate(5minutes)", "must be rate"),
    ],
)
def test_invalid_rates(text: str, words: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        parse_aws_expression(text)
    assert caught.value.field == "rate"
    assert words in caught.value.reason


def test_valid_at() -> None:
    parsed = parse_aws_expression("at(2028-02-29T23:59:59)")
    assert parsed == AtExpression(datetime(2028, 2, 29, 23, 59, 59))
    assert parsed.text == "at(2028-02-29T23:59:59)"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("at(2027-02-29T00:00:00)", "not a real date"),
        ("at(2026-02-30T00:00:00)", "not a real date"),
        ("at(2026-13-01T00:00:00)", "not a real date"),
        ("at(2026-01-01T24:00:00)", "not a real date"),
        ("at(2026-01-01T00:00)", "no offset and no fraction"),
        ("at(2026-01-01T00:00:00Z)", "no offset and no fraction"),
        ("at(2026-01-01T00:00:00+09:00)", "no offset and no fraction"),
        ("at(2026-01-01T00:00:00.5)", "no offset and no fraction"),
        ("at(2026-01-01 00:00:00)", "no offset and no fraction"),
    ],
)
def test_invalid_at(text: str, words: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        parse_aws_expression(text)
    assert caught.value.field == "at"
    assert words in caught.value.reason


# --- fire instants -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # New York springs forward 2027-03-14 02:00 -> 03:00: no 02:30 that day.
        (
            "America/New_York",
            utc(2027, 3, 12),
            [utc(2027, 3, 12, 7, 30), utc(2027, 3, 13, 7, 30), utc(2027, 3, 15, 6, 30)],
        ),
        # Sydney springs forward 2027-10-03 02:00 -> 03:00 (southern spring).
        (
            "Australia/Sydney",
            utc(2027, 9, 30),
            [utc(2027, 9, 30, 16, 30), utc(2027, 10, 1, 16, 30), utc(2027, 10, 3, 15, 30)],
        ),
        # Seoul has no daylight saving: every day, 02:30 KST = 17:30 UTC the day before.
        (
            "Asia/Seoul",
            utc(2027, 3, 12),
            [utc(2027, 3, 12, 17, 30), utc(2027, 3, 13, 17, 30), utc(2027, 3, 14, 17, 30)],
        ),
    ],
)
def test_spring_forward_skips_the_missing_time(
    zone: str, after: datetime, expected: list[datetime]
) -> None:
    assert next_fire_times("cron(30 2 * * ? *)", timezone=zone, after=after, count=3) == expected


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # New York falls back 2027-11-07 02:00 -> 01:00: 01:30 happens at 05:30Z (EDT) and
        # 06:30Z (EST); it fires once, at the first.
        (
            "America/New_York",
            utc(2027, 11, 6),
            [utc(2027, 11, 6, 5, 30), utc(2027, 11, 7, 5, 30), utc(2027, 11, 8, 6, 30)],
        ),
        # Sydney falls back 2027-04-04 03:00 -> 02:00: 02:30 happens at 15:30Z and 16:30Z (the
        # 3rd, UTC); it fires once, at the first.
        (
            "Australia/Sydney",
            utc(2027, 4, 2),
            [utc(2027, 4, 2, 15, 30), utc(2027, 4, 3, 15, 30), utc(2027, 4, 4, 16, 30)],
        ),
    ],
)
def test_fall_back_fires_the_repeated_time_once(
    zone: str, after: datetime, expected: list[datetime]
) -> None:
    minute = 30
    hour = 1 if zone == "America/New_York" else 2
    text = f"cron({minute} {hour} * * ? *)"
    assert next_fire_times(text, timezone=zone, after=after, count=3) == expected


def test_every_half_hour_across_fall_back_does_not_repeat_the_hour() -> None:
    # Berlin falls back 2027-10-31 at 01:00Z, from 03:00 CEST to 02:00 CET: 02:00-02:59 happen
    # twice (00:00-00:59Z as CEST, 01:00-01:59Z as CET) and fire the first time only.
    fires = next_fire_times(
        "cron(0/30 * * * ? *)", timezone="Europe/Berlin", after=utc(2027, 10, 31, 0, 0), count=5
    )
    assert fires == [
        utc(2027, 10, 31, 0, 30),  # 02:30 CEST
        utc(2027, 10, 31, 2, 0),  # 03:00 CET (02:00 and 02:30 CET are repeats)
        utc(2027, 10, 31, 2, 30),
        utc(2027, 10, 31, 3, 0),
        utc(2027, 10, 31, 3, 30),
    ]


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        # L: last day of the month, Feb 2028 is a leap month.
        ("cron(0 0 L * ? *)", utc(2028, 1, 31, 1), [utc(2028, 2, 29), utc(2028, 3, 31)]),
        # LW: last weekday; 2027-10-31 is a Sunday -> Friday the 29th.
        ("cron(0 0 LW * ? *)", utc(2027, 10, 1), [utc(2027, 10, 29), utc(2027, 11, 30)]),
        # 31W: months without a 31st are skipped, like plain 31 (2027-03-31 is a Wednesday,
        # April has 30 days, 2027-05-31 is a Monday).
        ("cron(0 0 31W * ? *)", utc(2027, 3, 1), [utc(2027, 3, 31), utc(2027, 5, 31)]),
        # 1W on a Saturday (2026-08-01) is Monday the 3rd, never the previous month.
        ("cron(0 0 1W 8 ? *)", utc(2026, 7, 1), [utc(2026, 8, 3), utc(2027, 8, 2)]),
        # 30W when the 30th is a Sunday that ends the month (2027-06-30 is a Wednesday;
        # 2026-11-30 is a Monday; 2025-11-30 is a Sunday -> Friday 28th).
        ("cron(0 0 30W 11 ? *)", utc(2025, 1, 1), [utc(2025, 11, 28), utc(2026, 11, 30)]),
        # 15W on a Saturday -> Friday 14th (2027-05-15 is a Saturday).
        ("cron(0 0 15W 5 ? *)", utc(2027, 1, 1), [utc(2027, 5, 14), utc(2028, 5, 15)]),
        # 2#5: the fifth Monday, only in months that have one (2027: Mar 29, May 31, Aug 30).
        (
            "cron(0 0 ? * 2#5 *)",
            utc(2027, 1, 1),
            [utc(2027, 3, 29), utc(2027, 5, 31), utc(2027, 8, 30)],
        ),
        # 6L: last Friday.
        ("cron(0 0 ? * 6L *)", utc(2027, 1, 1), [utc(2027, 1, 29), utc(2027, 2, 26)]),
        # L alone in day-of-week: every Saturday.
        ("cron(0 0 ? * L *)", utc(2027, 1, 1), [utc(2027, 1, 2), utc(2027, 1, 9)]),
        # Feb 29: leap years only.
        (
            "cron(0 0 29 2 ? *)",
            utc(2026, 1, 1),
            [utc(2028, 2, 29), utc(2032, 2, 29), utc(2036, 2, 29)],
        ),
        # The year limit: nothing after 2199.
        ("cron(0 0 1 1 ? *)", utc(2198, 6, 1), [utc(2199, 1, 1)]),
        ("cron(0 0 30 2 ? *)", utc(2026, 1, 1), []),
    ],
)
def test_special_day_rules_fire_exactly(
    text: str, after: datetime, expected: list[datetime]
) -> None:
    assert next_fire_times(text, after=after, count=len(expected) or 3) == expected


def test_start_and_end_are_inclusive_bounds() -> None:
    fires = next_fire_times(
        "cron(0 9 * * ? *)",
        after=utc(2027, 1, 1),
        count=10,
        start=utc(2027, 1, 3, 9),
        end=utc(2027, 1, 5, 9),
    )
    assert fires == [utc(2027, 1, 3, 9), utc(2027, 1, 4, 9), utc(2027, 1, 5, 9)]


def test_rate_is_anchored_at_start_or_at_after() -> None:
    start = utc(2027, 1, 1, 0, 7)
    assert next_fire_times("rate(10 minutes)", after=utc(2027, 1, 1, 1), count=2, start=start) == [
        utc(2027, 1, 1, 1, 7),
        utc(2027, 1, 1, 1, 17),
    ]
    assert next_fire_times("rate(1 hour)", after=utc(2027, 1, 1, 1), count=1) == [
        utc(2027, 1, 1, 2)
    ]


def test_rate_in_days_keeps_24_hours_across_daylight_saving() -> None:
    fires = next_fire_times(
        "rate(1 day)",
        timezone="America/New_York",
        after=utc(2027, 3, 13),
        count=3,
        start=utc(2027, 3, 13, 14),
    )
    assert fires == [utc(2027, 3, 13, 14), utc(2027, 3, 14, 14), utc(2027, 3, 15, 14)]


def test_at_fires_once_in_its_zone_and_ignores_bounds() -> None:
    text = "at(2027-01-01T09:00:00)"
    assert next_fire_times(text, timezone="Asia/Seoul", after=utc(2026, 1, 1)) == [
        utc(2027, 1, 1, 0)
    ]
    assert next_fire_times(text, timezone="Asia/Seoul", after=utc(2027, 1, 1, 0)) == []
    assert next_fire_times(
        text, timezone="Asia/Seoul", after=utc(2026, 1, 1), end=utc(2026, 6, 1)
    ) == [utc(2027, 1, 1, 0)]


def test_at_in_a_daylight_saving_gap_never_fires() -> None:
    text = "at(2027-03-14T02:30:00)"
    assert next_fire_times(text, timezone="America/New_York", after=utc(2027, 1, 1)) == []


def test_naive_after_is_read_as_utc_and_count_zero_is_empty() -> None:
    naive = datetime(2027, 1, 1, 8, 59)
    assert next_fire_times("cron(0 9 * * ? *)", after=naive, count=1) == [utc(2027, 1, 1, 9)]
    assert next_fire_times("cron(0 9 * * ? *)", after=naive, count=0) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "EST5EDT-nope"}, "timezone"),
        ({"count": -1}, "count"),
        (
            {"start": datetime(2027, 2, 1, tzinfo=UTC), "end": datetime(2027, 1, 1, tzinfo=UTC)},
            "end",
        ),
    ],
)
def test_bad_evaluation_arguments_are_invalid_schedule(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        next_fire_times("cron(0 9 * * ? *)", after=utc(2027, 1, 1), **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
