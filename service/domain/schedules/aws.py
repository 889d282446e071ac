"""EventBridge Scheduler's schedule expressions: `at()`, `rate()` and `cron()`, parsed and checked
exactly as AWS documents them, so nothing AWS would refuse gets as far as an AWS call.

Where AWS's documentation is silent (wrapping ranges such as FRI-MON, `L-3`, several `#` or `L`
entries in a list, `/` in day-of-week), we refuse: an expression we reject gets a clear message
here, one AWS rejects would surface later as an opaque provisioning failure.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.domain.errors import InvalidSchedule
from service.domain.schedules._calendar import (
    MAX_YEAR,
    MIN_YEAR,
    CalendarPattern,
    DaysFn,
    aws_weekday,
    last_day,
)

MAX_EXPRESSION_LENGTH = 256

MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# AWS numbering: SUN=1 ... SAT=7.
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

_AT = re.compile(r"at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)")
_RATE = re.compile(r"rate\(([0-9]+) ([a-z]+)\)")
_CRON = re.compile(r"cron\((.*)\)", re.DOTALL)
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class AtExpression:
    """A one-time schedule: the wall time `when` (naive), read in the schedule's time zone."""

    when: datetime

    @property
    def text(self) -> str:
        return f"at({self.when:%Y-%m-%dT%H:%M:%S})"


@dataclass(frozen=True)
class RateExpression:
    """A fixed interval of elapsed time, anchored at the schedule's start."""

    value: int
    unit: str  # "minute" | "hour" | "day"

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.value * _RATE_UNITS[self.unit])

    @property
    def text(self) -> str:
        return f"rate({self.value} {self.unit}{'' if self.value == 1 else 's'})"


@dataclass(frozen=True)
class CronExpression:
    """A six-field AWS cron expression and the calendar pattern it denotes."""

    fields: tuple[str, str, str, str, str, str]
    pattern: CalendarPattern

    @property
    def text(self) -> str:
        return f"cron({' '.join(self.fields)})"


AwsExpression = AtExpression | RateExpression | CronExpression


def parse_aws_expression(text: str) -> AwsExpression:
    """Parse an EventBridge Scheduler expression; InvalidSchedule names the field and reason."""
    if not isinstance(text, str):
        raise InvalidSchedule("expression", "must be a string")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise InvalidSchedule(
            "expression", f"is {len(text)} characters long; AWS allows {MAX_EXPRESSION_LENGTH}"
        )
    if text.startswith("at("):
        return _parse_at(text)
    if text.startswith("rate("):
        return _parse_rate(text)
    if text.startswith("cron("):
        return _parse_cron(text)
    raise InvalidSchedule(
        "expression", f"{text!r} is not an AWS expression: use at(...), rate(...) or cron(...)"
    )


def _parse_at(text: str) -> AtExpression:
    match = _AT.fullmatch(text)
    if match is None:
        raise InvalidSchedule(
            "at", f"{text!r} must be at(yyyy-mm-ddThh:mm:ss), with no offset and no fraction"
        )
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        when = datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise InvalidSchedule("at", f"{text!r} is not a real date and time ({exc})") from exc
    return AtExpression(when)


def _parse_rate(text: str) -> RateExpression:
    match = _RATE.fullmatch(text)
    if match is None:
        raise InvalidSchedule(
            "rate", f"{text!r} must be rate(value unit), unit minute(s), hour(s) or day(s)"
        )
    raw_value, unit = match.groups()
    value = int(raw_value)
    if value < 1 or raw_value != str(value):
        raise InvalidSchedule("rate", f"value {raw_value!r} must be a positive whole number")
    singular = unit.rstrip("s") if unit.endswith("s") else unit
    if singular not in _RATE_UNITS:
        raise InvalidSchedule("rate", f"unit {unit!r} must be minute(s), hour(s) or day(s)")
    if value == 1 and unit != singular:
        raise InvalidSchedule("rate", f"with the value 1 the unit is singular: rate(1 {singular})")
    if value > 1 and unit == singular:
        raise InvalidSchedule("rate", f"with a value above 1 the unit is plural: {singular}s")
    expression = RateExpression(value, singular)
    if expression.interval > timedelta(days=365 * 230):
        raise InvalidSchedule("rate", f"{text!r} is longer than the schedulable range")
    return expression


# --- cron ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i
    max_step: int | None = None
    span_high: int | None = None  # where '*' and 'a/n' stop, when below `high` (unix 7 = SUN)


_MINUTES = _Field("minutes", 0, 59, max_step=59)
_HOURS = _Field("hours", 0, 23, max_step=23)
_DOM = _Field("day-of-month", 1, 31, max_step=31)
_MONTH = _Field("month", 1, 12, MONTH_NAMES, max_step=12)
_DOW = _Field("day-of-week", 1, 7, DAY_NAMES)
_YEAR = _Field("year", MIN_YEAR, MAX_YEAR)


def _value(token: str, spec: _Field) -> int:
    upper = token.upper()
    if spec.names and upper in spec.names:
        return spec.low + spec.names.index(upper)
    if not token.isdigit() or not token.isascii():
        hint = f" or {spec.names[0]}-{spec.names[-1]}" if spec.names else ""
        raise InvalidSchedule(
            spec.name, f"{token!r} is not a value (expected {spec.low}-{spec.high}{hint})"
        )
    number = int(token)
    if not spec.low <= number <= spec.high:
        extra = ""
        if spec is _DOW and number == 0:
            extra = " (in AWS cron SUN is 1)"
        raise InvalidSchedule(spec.name, f"{number} is out of range {spec.low}-{spec.high}{extra}")
    return number


def parse_numeric_field(text: str, spec: _Field, *, steps: bool = True) -> tuple[int, ...]:
    """A list of values, ranges (a-b), and increments (*/n, a/n, a-b/n) as a sorted tuple."""
    if text == "":
        raise InvalidSchedule(spec.name, "is empty")
    values: set[int] = set()
    for item in text.split(","):
        if item == "":
            raise InvalidSchedule(spec.name, f"{text!r} has an empty list entry")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not steps:
                raise InvalidSchedule(spec.name, "'/' is not allowed in this field")
            if not step_text.isdigit() or not step_text.isascii() or int(step_text) < 1:
                raise InvalidSchedule(
                    spec.name, f"increment {step_text!r} in {item!r} must be a positive number"
                )
            step = int(step_text)
            if spec.max_step is not None and step > spec.max_step:
                raise InvalidSchedule(
                    spec.name, f"increment {step} in {item!r} is above {spec.max_step}"
                )
        top = spec.high if spec.span_high is None else spec.span_high
        if base == "*":
            low, high = spec.low, top
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(first, spec), _value(last, spec)
            if low > high:
                raise InvalidSchedule(
                    spec.name, f"range {base!r} runs backwards; write it as two ranges"
                )
        else:
            low = _value(base, spec)
            high = max(top, low) if slash else low
        values.update(range(low, high + 1, step))
    return tuple(sorted(values))


_NTH = re.compile(r"([0-9A-Za-z]+)#([0-9]+)")
_LAST_OF = re.compile(r"([0-9A-Za-z]+)L", re.IGNORECASE)
_NEAREST = re.compile(r"([0-9]+)W", re.IGNORECASE)


def _dom_rule(text: str) -> DaysFn:
    upper = text.upper()
    if upper == "*":
        return _every_day
    if upper == "L":
        return lambda y, m: (last_day(y, m),)
    if upper == "LW":
        return _last_weekday
    nearest = _NEAREST.fullmatch(text)
    if nearest is not None:
        day = _value(nearest.group(1), _DOM)
        return lambda y, m: _nearest_weekday(y, m, day)
    if "L" in upper or "W" in upper:
        raise InvalidSchedule(
            "day-of-month",
            f"{text!r}: L, LW and nW stand alone (no lists, ranges or offsets such as L-3)",
        )
    days = parse_numeric_field(text, _DOM)
    return lambda y, m: tuple(d for d in days if d <= last_day(y, m))


def _dow_rule(text: str) -> DaysFn:
    upper = text.upper()
    if upper == "*":
        return _every_day
    if upper == "L":  # alone, L is the last day of the week: Saturday
        return lambda y, m: _days_on_weekdays(y, m, (7,))
    nth = _NTH.fullmatch(text)
    if nth is not None:
        weekday = _value(nth.group(1), _DOW)
        index = int(nth.group(2))
        if not 1 <= index <= 5:
            raise InvalidSchedule("day-of-week", f"{text!r}: the number after # must be 1-5")
        return lambda y, m: _nth_weekday(y, m, weekday, index)
    last_of = _LAST_OF.fullmatch(text)
    if last_of is not None:
        weekday = _value(last_of.group(1), _DOW)
        return lambda y, m: _last_of_weekday(y, m, weekday)
    if "#" in text:
        raise InvalidSchedule(
            "day-of-week", f"{text!r}: '#' allows a single entry (3#1,6#3 is two expressions)"
        )
    if "L" in upper:  # no day name contains an L
        raise InvalidSchedule(
            "day-of-week", f"{text!r}: L and nL (last weekday n of the month) stand alone"
        )
    weekdays = parse_numeric_field(text, _DOW, steps=False)
    return lambda y, m: _days_on_weekdays(y, m, weekdays)


def _every_day(year: int, month: int) -> tuple[int, ...]:
    return _first_days(last_day(year, month))


@functools.cache
def _first_days(count: int) -> tuple[int, ...]:
    return tuple(range(1, count + 1))


def _days_on_weekdays(year: int, month: int, weekdays: tuple[int, ...]) -> tuple[int, ...]:
    return _weekday_days(aws_weekday(year, month, 1), last_day(year, month), weekdays)


@functools.cache
def _weekday_days(first: int, end: int, weekdays: tuple[int, ...]) -> tuple[int, ...]:
    # A month's days on given weekdays depend only on its first weekday and its length.
    return tuple(d for d in range(1, end + 1) if (first + d - 2) % 7 + 1 in weekdays)


def _nth_weekday(year: int, month: int, weekday: int, index: int) -> tuple[int, ...]:
    first = aws_weekday(year, month, 1)
    day = 1 + (weekday - first) % 7 + 7 * (index - 1)
    return (day,) if day <= last_day(year, month) else ()


def _last_of_weekday(year: int, month: int, weekday: int) -> tuple[int, ...]:
    end = last_day(year, month)
    return (end - (aws_weekday(year, month, end) - weekday) % 7,)


def _last_weekday(year: int, month: int) -> tuple[int, ...]:
    end = last_day(year, month)
    shift = {1: 2, 7: 1}.get(aws_weekday(year, month, end), 0)  # SUN -> Fri, SAT -> Fri
    return (end - shift,)


def _nearest_weekday(year: int, month: int, day: int) -> tuple[int, ...]:
    """The weekday nearest `day` without leaving the month; none if the month lacks `day`."""
    end = last_day(year, month)
    if day > end:
        return ()
    weekday = aws_weekday(year, month, day)
    if weekday == 7:  # Saturday: Friday before, or Monday after when the 1st is a Saturday
        return (day + 2,) if day == 1 else (day - 1,)
    if weekday == 1:  # Sunday: Monday after, or Friday before when it is the month's last day
        return (day - 2,) if day == end else (day + 1,)
    return (day,)


# Parsed expressions are immutable and their patterns memoize each month's days, so every task
# with the same expression shares one: compiling and checking it again costs a lookup.
@functools.lru_cache(maxsize=1024)
def _parse_cron(text: str) -> CronExpression:
    match = _CRON.fullmatch(text)
    if match is None:
        raise InvalidSchedule("cron", f"{text!r} must be cron(fields), closed by ')'")
    inner = match.group(1)
    parts = inner.split()
    if len(parts) != 6 or inner != inner.strip():
        raise InvalidSchedule(
            "cron",
            f"{text!r} must have six fields separated by spaces: "
            "minutes hours day-of-month month day-of-week year",
        )
    minute_text, hour_text, dom_text, month_text, dow_text, year_text = parts
    if dom_text == "?" and dow_text == "?":
        raise InvalidSchedule("day-of-month", "'?' in both day fields: one of them needs a value")
    if dom_text != "?" and dow_text != "?":
        raise InvalidSchedule(
            "day-of-week",
            f"day-of-month {dom_text!r} and day-of-week {dow_text!r} are both set: "
            "one of them must be '?'",
        )
    for name, value in (("minutes", minute_text), ("hours", hour_text)):
        if "?" in value or "L" in value.upper() or "W" in value.upper() or "#" in value:
            raise InvalidSchedule(name, f"{value!r}: only , - * / and numbers are allowed")
    day_rule = _dom_rule(dom_text) if dow_text == "?" else _dow_rule(dow_text)
    if "?" in (month_text + year_text):
        raise InvalidSchedule("month" if "?" in month_text else "year", "'?' is not allowed here")
    pattern = CalendarPattern(
        minutes=parse_numeric_field(minute_text, _MINUTES),
        hours=parse_numeric_field(hour_text, _HOURS),
        months=parse_numeric_field(month_text, _MONTH),
        years=parse_numeric_field(year_text, _YEAR),
        day_rule=day_rule,
    )
    fields = (minute_text, hour_text, dom_text, month_text, dow_text, year_text)
    return CronExpression(fields, pattern)
