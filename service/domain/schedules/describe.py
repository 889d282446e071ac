"""Plain-language descriptions of AWS cron fields, for people reading `explain` output."""

from __future__ import annotations

import itertools

from service.domain.schedules.aws import (
    _DOM,
    _DOW,
    _HOURS,
    _MINUTES,
    _MONTH,
    _YEAR,
    DAY_NAMES,
    parse_numeric_field,
)

_DAY_WORDS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_WORDS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_NTH_WORDS = ("first", "second", "third", "fourth", "fifth")


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def join_words(words: list[str]) -> str:
    if len(words) <= 2:
        return " and ".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def describe_time(minutes: tuple[int, ...], hours: tuple[int, ...]) -> str:
    every_hour = len(hours) == 24
    if len(minutes) == 60 and every_hour:
        return "every minute"
    if len(minutes) * len(hours) <= 4:
        return "at " + join_words([f"{h:02d}:{m:02d}" for h in hours for m in minutes])
    step = _even_step(minutes, 60)
    if step is not None:
        what = "every minute" if step == 1 else f"every {step} minutes"
        if minutes[0]:
            what += f" from minute {minutes[0]}"
    elif len(minutes) <= 4:
        what = "at minute " + join_words([str(m) for m in minutes])
    else:
        what = f"at {len(minutes)} set minutes"
    if every_hour:
        return what + (" past every hour" if step is None else "")
    hour_step = _even_step(hours, 24)
    if hour_step is not None and hour_step > 1:
        return f"{what} of every {ordinal(hour_step)} hour from {hours[0]:02d}:00"
    runs = _spans(hours)
    return f"{what}, during " + join_words(
        [f"{a:02d}:00-{b:02d}:59" if a != b else f"{a:02d}:00-{a:02d}:59" for a, b in runs]
    )


def _even_step(values: tuple[int, ...], size: int) -> int | None:
    """The step of a progression that wraps evenly through the whole field, if it is one."""
    if len(values) < 2:
        return None
    step = values[1] - values[0]
    evenly = all(b - a == step for a, b in itertools.pairwise(values))
    if evenly and values[0] < step and values[-1] + step >= size:
        return step
    return None


def _spans(values: tuple[int, ...]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v - 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def describe_weekdays(aws_days: tuple[int, ...]) -> str:
    if len(aws_days) == 7:
        return "every day"
    if aws_days == (2, 3, 4, 5, 6):
        return "Monday to Friday"
    if aws_days == (1, 7):
        return "Saturday and Sunday"
    parts = []
    for a, b in _spans(aws_days):
        if b - a >= 2:
            parts.append(f"{_DAY_WORDS[a - 1]} to {_DAY_WORDS[b - 1]}")
        else:
            parts.extend(_DAY_WORDS[d - 1] for d in range(a, b + 1))
    return join_words(parts)


def describe_days(dom: str, dow: str) -> str:
    if dow == "?":
        upper = dom.upper()
        if upper == "*":
            return "every day"
        if upper == "L":
            return "on the last day of the month"
        if upper == "LW":
            return "on the last weekday of the month"
        if upper.endswith("W"):
            return f"on the weekday nearest the {ordinal(int(upper[:-1]))} of the month"
        days = parse_numeric_field(dom, _DOM)
        return "on the " + join_words([ordinal(d) for d in days]) + " of the month"
    upper = dow.upper()
    if upper == "*":
        return "every day"
    if upper == "L":
        return "on Saturday"
    if "#" in upper:
        day, nth = upper.split("#")
        number = parse_numeric_field(day, _DOW)[0]
        return f"on the {_NTH_WORDS[int(nth) - 1]} {_DAY_WORDS[number - 1]} of the month"
    if upper.endswith("L"):
        number = parse_numeric_field(upper[:-1], _DOW)[0]
        return f"on the last {_DAY_WORDS[number - 1]} of the month"
    return describe_weekdays(parse_numeric_field(dow, _DOW, steps=False))


def describe_cron(fields: tuple[str, str, str, str, str, str]) -> str:
    """E.g. 'At 09:00, Monday to Friday'. No zone: the caller adds it."""
    minute, hour, dom, month, dow, year = fields
    text = describe_time(parse_numeric_field(minute, _MINUTES), parse_numeric_field(hour, _HOURS))
    text = text[0].upper() + text[1:] + ", " + describe_days(dom, dow)
    if month != "*":
        months = parse_numeric_field(month, _MONTH)
        text += ", in " + join_words([_MONTH_WORDS[m - 1] for m in months])
    if year != "*":
        years = parse_numeric_field(year, _YEAR)
        spans = [str(a) if a == b else f"{a}-{b}" for a, b in _spans(years)]
        text += ", in " + join_words(spans)
    return text


assert len(DAY_NAMES) == len(_DAY_WORDS)
