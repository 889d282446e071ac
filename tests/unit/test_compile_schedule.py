"""compile_schedule: every API schedule kind, its mode, expression, warnings and bad input."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from service.domain.errors import InvalidSchedule, TimebridgeError
from service.domain.schedules import CompiledSchedule, ScheduleSpec, compile_schedule, explain

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # a Monday


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def compiled(spec: dict[str, Any], now: datetime = NOW) -> CompiledSchedule:
    return compile_schedule(spec, now=now)


def test_invalid_schedule_is_a_timebridge_error_and_a_value_error() -> None:
    with pytest.raises(InvalidSchedule) as caught:
        compiled({"kind": "daily", "time": "25:00"})
    assert isinstance(caught.value, TimebridgeError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.field == "schedule.time"
    assert caught.value.code == "INVALID_SCHEDULE"


@pytest.mark.parametrize(
    ("spec", "expression", "zone"),
    [
        ({"kind": "daily", "time": "09:00"}, "cron(0 9 * * ? *)", "UTC"),
        (
            {"kind": "daily", "time": "7:05", "timezone": "Asia/Seoul"},
            "cron(5 7 * * ? *)",
            "Asia/Seoul",
        ),
        (
            {"kind": "weekly", "days": ["mon", "Friday"], "time": "17:30"},
            "cron(30 17 ? * MON,FRI *)",
            "UTC",
        ),
        (
            {
                "kind": "weekly",
                "days": ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
                "time": "00:00",
            },
            "cron(0 0 * * ? *)",
            "UTC",
        ),
        ({"kind": "monthly", "days": [1, 15], "time": "08:00"}, "cron(0 8 1,15 * ? *)", "UTC"),
        ({"kind": "monthly", "days": ["L"], "time": "23:59"}, "cron(59 23 L * ? *)", "UTC"),
        ({"kind": "cron", "expression": "cron(0 9 ? * 2#1 *)"}, "cron(0 9 ? * 2#1 *)", "UTC"),
        (
            {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"},
            "cron(0 9 ? * MON-FRI *)",
            "Asia/Seoul",
        ),
        ({"kind": "cron", "expression": "@hourly"}, "cron(0 * * * ? *)", "UTC"),
        ({"kind": "rate", "expression": "rate(5 minutes)"}, "rate(5 minutes)", "UTC"),
    ],
)
def test_recurring_kinds_compile_to_one_native_expression(
    spec: dict[str, Any], expression: str, zone: str
) -> None:
    result = compiled(spec)
    assert result.mode == "native"
    assert result.aws_expression == expression
    assert result.expression_timezone == zone
    assert result.one_time is False
    assert result.description.endswith(f"({zone})")


def test_once_with_a_local_time_becomes_at_in_utc() -> None:
    result = compiled({"kind": "once", "at": "2026-12-01T09:00:00", "timezone": "Asia/Seoul"})
    assert result.aws_expression == "at(2026-12-01T00:00:00)"
    assert result.expression_timezone == "UTC"
    assert result.timezone == "Asia/Seoul"
    assert result.one_time is True
    assert result.next_fire_times(NOW, 5) == [utc(2026, 12, 1, 0, 0)]


def test_once_with_an_offset_ignores_the_zone_for_the_instant() -> None:
    result = compiled({"kind": "once", "at": "2026-12-01T09:00:00+02:00", "timezone": "Asia/Seoul"})
    assert result.aws_expression == "at(2026-12-01T07:00:00)"


def test_once_rounds_a_fraction_up_to_the_next_second() -> None:
    result = compiled({"kind": "once", "at": "2026-12-01T09:00:00.250Z"})
    assert result.aws_expression == "at(2026-12-01T09:00:01)"


def test_once_in_the_past_warns_that_it_never_fires() -> None:
    result = compiled({"kind": "once", "at": "2026-01-01T00:00:00Z"})
    assert result.next_fire_times(NOW) == []
    assert any("in the past" in w for w in result.warnings)


def test_once_in_a_spring_forward_gap_is_refused() -> None:
    with pytest.raises(InvalidSchedule) as caught:
        compiled({"kind": "once", "at": "2027-03-14T02:30:00", "timezone": "America/New_York"})
    assert caught.value.field == "schedule.at"
    assert "does not exist" in caught.value.reason


def test_once_in_a_fall_back_overlap_uses_the_first_and_warns() -> None:
    result = compiled({"kind": "once", "at": "2027-11-07T01:30:00", "timezone": "America/New_York"})
    assert result.aws_expression == "at(2027-11-07T05:30:00)"  # 01:30 EDT (-04:00)
    assert any("happens twice" in w for w in result.warnings)


def test_delay_fires_that_many_seconds_from_now() -> None:
    result = compiled({"kind": "delay", "seconds": 600})
    assert result.aws_expression == "at(2026-11-23T05:10:00)"
    assert result.one_time


def test_immediate_fires_now_and_is_listed_by_explain() -> None:
    result = compiled({"kind": "immediate"})
    assert result.aws_expression == "at(2026-11-23T05:00:00)"
    view = explain(result, now=NOW)
    assert view["next_fire_times"] == [
        {"utc": "2026-11-23T05:00:00Z", "local": "2026-11-23T05:00:00+00:00"}
    ]
    assert view["warnings"] == []


def test_unix_cron_with_both_day_fields_keeps_either_meaning_in_chained_mode() -> None:
    result = compiled({"kind": "cron", "expression": "0 9 1 * 1"})  # the 1st OR any Monday
    assert result.mode == "chained"
    assert result.aws_expression is None
    assert result.next_fire_times(NOW, 4) == [
        utc(2026, 11, 23, 9),  # Monday
        utc(2026, 11, 30, 9),  # Monday
        utc(2026, 12, 1, 9),  # the 1st, a Tuesday
        utc(2026, 12, 7, 9),  # Monday
    ]
    assert result.aws_expression_after(NOW) == "at(2026-11-23T09:00:00)"
    assert any("EITHER" in w for w in result.warnings)


def test_star_step_day_field_warns_about_the_vixie_difference() -> None:
    result = compiled({"kind": "cron", "expression": "0 0 */2 * 1"})
    assert result.mode == "chained"
    assert any("Vixie" in w for w in result.warnings)


def test_monthly_list_mixing_last_day_with_days_is_chained() -> None:
    result = compiled({"kind": "monthly", "days": [1, 15, "L"], "time": "08:00"})
    assert result.mode == "chained"
    assert result.next_fire_times(NOW, 4) == [
        utc(2026, 11, 30, 8),
        utc(2026, 12, 1, 8),
        utc(2026, 12, 15, 8),
        utc(2026, 12, 31, 8),
    ]


def test_rate_without_start_is_anchored_at_creation() -> None:
    result = compiled({"kind": "rate", "expression": "rate(2 hours)"})
    assert result.start == NOW
    assert result.next_fire_times(NOW, 2) == [utc(2026, 11, 23, 7), utc(2026, 11, 23, 9)]


def test_rate_with_start_fires_first_at_start() -> None:
    result = compiled(
        {"kind": "rate", "expression": "rate(1 day)", "start_at": "2026-12-01T06:00:00Z"}
    )
    assert result.next_fire_times(NOW, 2) == [utc(2026, 12, 1, 6), utc(2026, 12, 2, 6)]


def test_daily_rate_in_a_dst_zone_warns_that_wall_time_drifts() -> None:
    result = compiled({"kind": "rate", "expression": "rate(1 day)", "timezone": "Europe/Berlin"})
    assert any("elapsed time" in w for w in result.warnings)


def test_rrule_that_a_cron_states_exactly_is_native_and_bounded_by_dtstart() -> None:
    result = compiled(
        {
            "kind": "rrule",
            "rrule": "DTSTART;TZID=Europe/Berlin:20261201T090000\nRRULE:FREQ=WEEKLY;BYDAY=MO,WE",
        }
    )
    assert result.mode == "native"
    assert result.aws_expression == "cron(0 9 ? * MON,WED *)"
    assert result.timezone == "Europe/Berlin"
    assert result.start == utc(2026, 12, 1, 8)
    assert result.next_fire_times(NOW, 2) == [utc(2026, 12, 2, 8), utc(2026, 12, 7, 8)]


def test_rrule_last_friday_maps_to_numeric_l_form() -> None:
    result = compiled(
        {
            "kind": "rrule",
            "rrule": "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0",
            "dtstart": "2026-11-01T00:00:00",
        }
    )
    assert result.aws_expression == "cron(0 17 ? * 6L *)"


def test_rrule_until_becomes_the_end_bound() -> None:
    result = compiled(
        {
            "kind": "rrule",
            "rrule": "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;UNTIL=20261126T090000Z",
            "dtstart": "2026-11-20T09:00:00",
        }
    )
    assert result.mode == "native"
    assert result.end == utc(2026, 11, 26, 9)
    assert result.next_fire_times(NOW, 10) == [
        utc(2026, 11, 23, 9),
        utc(2026, 11, 24, 9),
        utc(2026, 11, 25, 9),
        utc(2026, 11, 26, 9),
    ]


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;COUNT=3;BYHOUR=9;BYMINUTE=0",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;BYHOUR=9;BYMINUTE=0",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=9;BYMINUTE=0",
        "FREQ=YEARLY;BYWEEKNO=1;BYDAY=MO;BYHOUR=9;BYMINUTE=0",
    ],
)
def test_rrule_without_an_exact_cron_is_chained(rule: str) -> None:
    result = compiled({"kind": "rrule", "rrule": rule, "dtstart": "2026-11-23T09:00:00"})
    assert result.mode == "chained"
    assert result.next_fire_times(NOW, 1)


def test_rrule_count_stops_after_that_many_fires() -> None:
    result = compiled(
        {
            "kind": "rrule",
            "rrule": "DTSTART;TZID=America/New_York:20261201T090000\nRRULE:FREQ=DAILY;COUNT=3",
        }
    )
    assert result.next_fire_times(NOW, 10) == [
        utc(2026, 12, 1, 14),
        utc(2026, 12, 2, 14),
        utc(2026, 12, 3, 14),
    ]


def test_rrule_bysetpos_last_weekday_of_month() -> None:
    result = compiled(
        {
            "kind": "rrule",
            "rrule": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=18;BYMINUTE=0",
            "dtstart": "2026-11-01T00:00:00",
            "timezone": "Asia/Seoul",
        }
    )
    # 2026-11-30 is a Monday, 2026-12-31 a Thursday, 2027-01-29 a Friday: 18:00 KST = 09:00 UTC.
    assert result.next_fire_times(NOW, 3) == [
        utc(2026, 11, 30, 9),
        utc(2026, 12, 31, 9),
        utc(2027, 1, 29, 9),
    ]


def test_fixed_delay_is_chained_and_projects_from_completion() -> None:
    result = compiled({"kind": "fixed_delay", "seconds": 3600})
    assert result.mode == "chained"
    assert result.fixed_delay_seconds == 3600
    assert result.next_fire_times(NOW, 2) == [utc(2026, 11, 23, 6), utc(2026, 11, 23, 7)]


def test_dst_gap_and_overlap_fires_are_named_in_warnings() -> None:
    gap = compiled({"kind": "daily", "time": "02:30", "timezone": "America/New_York"})
    assert any("2027-03-14 02:30 does not exist" in w for w in gap.warnings)
    overlap = compiled({"kind": "daily", "time": "01:30", "timezone": "America/New_York"})
    assert any("2027-11-07 01:30 happens twice" in w for w in overlap.warnings)
    southern = compiled({"kind": "daily", "time": "02:30", "timezone": "Australia/Sydney"})
    assert any("2027-10-03 02:30 does not exist" in w for w in southern.warnings)
    plain = compiled({"kind": "daily", "time": "02:30", "timezone": "Asia/Seoul"})
    assert plain.warnings == ()


def test_days_that_some_months_lack_are_warned_about() -> None:
    result = compiled({"kind": "monthly", "days": [31], "time": "08:00"})
    assert any("skipped" in w for w in result.warnings)
    fifth = compiled({"kind": "cron", "expression": "cron(0 9 ? * 2#5 *)"})
    assert any("skipped" in w for w in fifth.warnings)


def test_start_and_end_bound_a_recurring_schedule() -> None:
    result = compiled(
        {
            "kind": "daily",
            "time": "09:00",
            "timezone": "Asia/Seoul",
            "start_at": "2026-12-01T00:00:00",
            "end_at": "2026-12-03T09:00:00",
        }
    )
    assert result.start == utc(2026, 11, 30, 15)
    assert result.end == utc(2026, 12, 3, 0)
    assert result.next_fire_times(NOW, 10) == [
        utc(2026, 12, 1, 0),
        utc(2026, 12, 2, 0),
        utc(2026, 12, 3, 0),
    ]


def test_schedule_that_never_fires_again_says_so() -> None:
    result = compiled({"kind": "daily", "time": "09:00", "end_at": "2026-01-01T00:00:00Z"})
    assert result.next_fire_times(NOW) == []
    assert any("never fires" in w for w in result.warnings)


def test_spec_object_and_mapping_compile_alike() -> None:
    spec = ScheduleSpec(kind="weekly", days=("MON",), time="09:00", timezone="Asia/Seoul")
    assert compile_schedule(spec, now=NOW) == compile_schedule(
        {"kind": "weekly", "days": ["MON"], "time": "09:00", "timezone": "Asia/Seoul"}, now=NOW
    )


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"kind": "hourly"}, "schedule.kind", "must be one of"),
        ({"time": "09:00"}, "schedule.kind", "must be one of"),
        ({"kind": "daily"}, "schedule.time", "required"),
        ({"kind": "daily", "time": "9am"}, "schedule.time", "HH:MM"),
        ({"kind": "daily", "time": "09:00:30"}, "schedule.time", "HH:MM"),
        (
            {"kind": "daily", "time": "09:00", "expression": "x"},
            "schedule.expression",
            "not a field",
        ),
        ({"kind": "daily", "time": "09:00", "timezone": "Mars/Base"}, "schedule.timezone", "IANA"),
        ({"kind": "daily", "time": "09:00", "timezone": 9}, "schedule.timezone", "string"),
        ({"kind": "weekly", "days": [], "time": "09:00"}, "schedule.days", "non-empty"),
        ({"kind": "weekly", "days": ["MOON"], "time": "09:00"}, "schedule.days", "not a day"),
        ({"kind": "weekly", "days": [1], "time": "09:00"}, "schedule.days", "name the day"),
        ({"kind": "monthly", "days": [0], "time": "09:00"}, "schedule.days", "1-31"),
        ({"kind": "monthly", "days": [32], "time": "09:00"}, "schedule.days", "1-31"),
        ({"kind": "monthly", "days": "1", "time": "09:00"}, "schedule.days", "list"),
        ({"kind": "cron", "expression": "cron(0 9 ? * 0 *)"}, "schedule.expression", "SUN is 1"),
        ({"kind": "cron", "expression": "0 9 * *"}, "schedule.expression", "five"),
        ({"kind": "cron", "expression": "0 0 9 * * 1"}, "schedule.expression", "six fields"),
        ({"kind": "cron", "expression": "0 9 ? * 1"}, "schedule.expression", "'?'"),
        ({"kind": "cron", "expression": "rate(5 minutes)"}, "schedule.expression", "kind 'rate'"),
        ({"kind": "cron", "expression": "@reboot"}, "schedule.expression", "preset"),
        ({"kind": "rate", "expression": "rate(1 minutes)"}, "schedule.expression", "singular"),
        ({"kind": "rate", "expression": "cron(0 9 * * ? *)"}, "schedule.expression", "rate("),
        ({"kind": "once"}, "schedule.at", "required"),
        ({"kind": "once", "at": "tomorrow"}, "schedule.at", "ISO 8601"),
        (
            {"kind": "once", "at": "2026-12-01T09:00:00", "end_at": "2027-01-01T00:00:00"},
            "schedule.end_at",
            "not a field",
        ),
        ({"kind": "delay", "seconds": 0}, "schedule.seconds", "between"),
        ({"kind": "delay", "seconds": True}, "schedule.seconds", "whole number"),
        ({"kind": "delay", "seconds": "60"}, "schedule.seconds", "whole number"),
        ({"kind": "fixed_delay", "seconds": 30}, "schedule.seconds", "between 60"),
        ({"kind": "rrule", "rrule": "FREQ=SECONDLY"}, "schedule.rrule", "SECONDLY"),
        ({"kind": "rrule", "rrule": "FREQ=DAILY;BYDAY=XX"}, "schedule.rrule", "BYDAY"),
        (
            {"kind": "rrule", "rrule": "FREQ=DAILY;COUNT=2;UNTIL=20270101T000000Z"},
            "schedule.rrule",
            "COUNT and UNTIL",
        ),
        ({"kind": "rrule", "rrule": "FREQ=DAILY;FOO=1"}, "schedule.rrule", "not supported"),
        ({"kind": "rrule", "rrule": "BYHOUR=9"}, "schedule.rrule", "FREQ"),
        (
            {"kind": "rrule", "rrule": "EXDATE:20270101\nRRULE:FREQ=DAILY"},
            "schedule.rrule",
            "only DTSTART",
        ),
        (
            {
                "kind": "rrule",
                "rrule": "DTSTART;TZID=Asia/Seoul:20270101T090000\nRRULE:FREQ=DAILY",
                "timezone": "UTC",
            },
            "schedule.rrule",
            "disagrees",
        ),
        ({"kind": "rrule", "rrule": "FREQ=DAILY;INTERVAL=0"}, "schedule.rrule", "positive"),
        (
            {
                "kind": "daily",
                "time": "09:00",
                "start_at": "2027-01-02T00:00:00Z",
                "end_at": "2027-01-01T00:00:00Z",
            },
            "schedule.end_at",
            "after start_at",
        ),
        (
            {"kind": "daily", "time": "09:00", "flexible_window_minutes": 1441},
            "schedule.flexible_window_minutes",
            "1-1440",
        ),
    ],
)
def test_bad_schedules_name_the_field_and_the_reason(
    spec: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        compiled(spec)
    assert caught.value.field == field
    assert words in caught.value.reason


def test_schedule_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidSchedule) as caught:
        compile_schedule(["daily"], now=NOW)  # type: ignore[arg-type]
    assert caught.value.field == "schedule"


def test_explain_lists_utc_and_local_times() -> None:
    result = compiled({"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"})
    view = explain(result, now=NOW, count=2)
    assert view == {
        "aws_expression": "cron(0 9 ? * MON-FRI *)",
        "mode": "native",
        "description": "At 09:00, Monday to Friday (Asia/Seoul)",
        "warnings": [],
        "next_fire_times": [
            {"utc": "2026-11-24T00:00:00Z", "local": "2026-11-24T09:00:00+09:00"},
            {"utc": "2026-11-25T00:00:00Z", "local": "2026-11-25T09:00:00+09:00"},
        ],
    }


def test_a_day_field_covering_every_day_is_warned_about() -> None:
    result = compiled({"kind": "cron", "expression": "0 0 1,6 * 0-6"})
    assert result.aws_expression == "cron(0 0 * * ? *)"
    assert any("covers every day" in w for w in result.warnings)
    assert compiled({"kind": "cron", "expression": "0 0 1,6 * *"}).warnings == ()


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "daily", "time": "09:30", "timezone": "Europe/Berlin"},
        {"kind": "weekly", "time": "02:30", "days": ["SUN"], "timezone": "America/New_York"},
        {"kind": "monthly", "time": "10:00", "days": [15, "L"]},
        {"kind": "monthly", "time": "10:00", "days": [31]},
        {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"},
        {"kind": "cron", "expression": "0 9 13 * 5"},  # unix either-day: chained
        {"kind": "cron", "expression": "cron(0 12 * * ? 2027)", "end_at": "2027-06-01T00:00:00"},
    ],
)
def test_now_independent_kinds_compile_alike_at_any_instant(spec: dict[str, Any]) -> None:
    # The task service compiles each such schedule once for every task that has it.
    from service.domain.schedules.compiler import NOW_INDEPENDENT_KINDS

    assert spec["kind"] in NOW_INDEPENDENT_KINDS
    instants = (NOW, utc(2026, 3, 29, 1, 30), utc(2027, 7, 1, 23, 59), utc(2031, 1, 1))
    first, *others = (compile_schedule(spec, now=now, hints=False) for now in instants)
    after = utc(2026, 12, 1)
    for other in others:
        assert dataclasses.replace(other, warnings=()) == dataclasses.replace(first, warnings=())
        assert other.next_fire_times(after, 8) == first.next_fire_times(after, 8)
