"""Unix (5-field) cron: parsed with its own rules and translated to AWS cron when the meaning is
identical.

Unix differs from AWS in ways that bite: day-of-week 0-7 with SUN as 0 (and 7), no '?', and a day
matches when EITHER day field matches if both are restricted. As POSIX says, a day field is
restricted unless it is '*' itself, so '0-6' and '*/1' restrict. (Vixie cron looks at the first
character instead and counts '*/2' as unrestricted; croniter turns a field that covers every
value into '*' when the other field contains a '*'; `explain` warns where a reading differs.)
The "either" has no AWS equivalent, so such expressions run in chained mode, evaluated here,
rather than being silently changed.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from service.domain.errors import InvalidSchedule
from service.domain.schedules._calendar import (
    MAX_YEAR,
    MIN_YEAR,
    CalendarPattern,
    DaysFn,
    aws_weekday,
    last_day,
)
from service.domain.schedules.aws import (
    DAY_NAMES,
    MAX_EXPRESSION_LENGTH,
    MONTH_NAMES,
    _Field,
    parse_numeric_field,
)

PRESETS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MINUTES = _Field("minute", 0, 59)
_HOURS = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, MONTH_NAMES)
# SUN=0 ... SAT=6; 7 is accepted as SUN again, but '*' and 'a/n' run 0-6 (as croniter does).
_DOW = _Field("day-of-week", 0, 7, DAY_NAMES, span_high=6)
_ALL_YEARS = tuple(range(MIN_YEAR, MAX_YEAR + 1))


@dataclass(frozen=True)
class UnixCron:
    """A parsed unix cron expression. `weekdays` use AWS numbering (SUN=1 ... SAT=7)."""

    source: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    dom_restricted: bool
    dow_restricted: bool
    pattern: CalendarPattern

    @property
    def days_either(self) -> bool:
        """True when both day fields are restricted, so a day matching either one fires."""
        return self.dom_restricted and self.dow_restricted

    def to_aws(self) -> str | None:
        """The AWS cron expression with exactly the same fire times, or None if there is none."""
        all_dom = len(self.days_of_month) == 31
        all_dow = len(self.weekdays) == 7
        if self.days_either:
            if not (all_dom or all_dow):
                return None
            dom, dow = "*", "?"
        elif self.dom_restricted:
            dom, dow = render_values(self.days_of_month, 1, 31), "?"
        elif self.dow_restricted:
            dom, dow = "?", render_weekdays(self.weekdays)
        else:
            dom, dow = "*", "?"
        fields = (
            render_values(self.minutes, 0, 59),
            render_values(self.hours, 0, 23),
            dom,
            render_values(self.months, 1, 12),
            dow,
            "*",
        )
        text = f"cron({' '.join(fields)})"
        return text if len(text) <= MAX_EXPRESSION_LENGTH else None


@functools.lru_cache(maxsize=1024)  # immutable results: tasks with one expression share one
def parse_unix_cron(text: str, field: str = "expression") -> UnixCron:
    """Parse a 5-field unix cron expression or an @preset; InvalidSchedule names the field."""
    source = text.strip()
    expanded = PRESETS.get(source.lower(), source)
    if expanded.startswith("@"):
        raise InvalidSchedule(
            field, f"{source!r} is not a known preset ({', '.join(sorted(PRESETS))})"
        )
    parts = expanded.split()
    if len(parts) != 5:
        hint = ""
        if len(parts) == 6:
            hint = "; for AWS's six fields write cron(...), seconds are not supported"
        raise InvalidSchedule(
            field,
            f"{source!r} has {len(parts)} fields; unix cron has five: "
            f"minute hour day-of-month month day-of-week{hint}",
        )
    for part, spec in zip(parts, (_MINUTES, _HOURS, _DOM, _MONTH, _DOW), strict=True):
        for mark in ("?", "L", "W", "#"):
            if mark in part.upper() and not _is_names_only(part, spec):
                raise InvalidSchedule(
                    f"{field}.{spec.name}",
                    f"{part!r}: {mark!r} is not unix cron; write an AWS cron(...) expression",
                )
    try:
        minutes = parse_numeric_field(parts[0], _MINUTES)
        hours = parse_numeric_field(parts[1], _HOURS)
        doms = parse_numeric_field(parts[2], _DOM)
        months = parse_numeric_field(parts[3], _MONTH)
        raw_dows = parse_numeric_field(parts[4], _DOW)
    except InvalidSchedule as exc:
        raise InvalidSchedule(f"{field}.{exc.field}", exc.reason) from exc
    weekdays = tuple(sorted({d % 7 + 1 for d in raw_dows}))  # unix 0/7=SUN -> AWS 1
    # POSIX: a day field restricts unless it is '*' itself (0-6 or */1 do restrict).
    dom_restricted = parts[2] != "*"
    dow_restricted = parts[4] != "*"
    pattern = CalendarPattern(
        minutes=minutes,
        hours=hours,
        months=months,
        years=_ALL_YEARS,
        day_rule=_unix_day_rule(doms, weekdays, dom_restricted, dow_restricted),
    )
    return UnixCron(
        source=source,
        minutes=minutes,
        hours=hours,
        days_of_month=doms,
        months=months,
        weekdays=weekdays,
        dom_restricted=dom_restricted,
        dow_restricted=dow_restricted,
        pattern=pattern,
    )


def _is_names_only(part: str, spec: _Field) -> bool:
    """True for month or day names (e.g. JUL, SAT) that merely contain the letter L or W."""
    tokens = part.upper().replace("-", ",").replace("/", ",").split(",")
    return bool(spec.names) and all(t in spec.names or t.isdigit() or t == "*" for t in tokens)


def _unix_day_rule(
    doms: tuple[int, ...], weekdays: tuple[int, ...], dom_restricted: bool, dow_restricted: bool
) -> DaysFn:
    dom_set, dow_set = frozenset(doms), frozenset(weekdays)
    either = dom_restricted and dow_restricted

    def days(year: int, month: int) -> tuple[int, ...]:
        out = []
        for day in range(1, last_day(year, month) + 1):
            in_dom = day in dom_set
            in_dow = aws_weekday(year, month, day) in dow_set
            if (in_dom or in_dow) if either else (in_dom and in_dow):
                out.append(day)
        return tuple(out)

    return days


def render_values(values: tuple[int, ...], low: int, high: int) -> str:
    """The shortest exact AWS rendering of a sorted set: '*', 'a/n', ranges and lists."""
    if len(values) == high - low + 1:
        return "*"
    if len(values) >= 3:
        step = values[1] - values[0]
        if (
            step > 1
            and all(b - a == step for a, b in itertools.pairwise(values))
            and values[-1] + step > high
        ):
            return f"{values[0]}/{step}"
    return ",".join(_runs(values, str))


def render_weekdays(weekdays: tuple[int, ...]) -> str:
    """AWS day-of-week (SUN=1 ... SAT=7) as names, with runs such as MON-FRI."""
    if len(weekdays) == 7:
        return "*"
    return ",".join(_runs(weekdays, lambda d: DAY_NAMES[d - 1]))


def _runs(values: tuple[int, ...], name: Callable[[int], str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{name(values[i])}-{name(values[j])}")
            i = j + 1
        else:
            out.append(str(name(values[i])))
            i += 1
    return out
