"""iCalendar RRULE schedules (RFC 5545 subset) evaluated with dateutil, in a time zone, with
EventBridge Scheduler's daylight-saving rules so native and chained modes agree to the minute.

Supported: FREQ (MINUTELY..YEARLY), INTERVAL, COUNT, UNTIL, BYDAY (with ordinals), BYMONTHDAY,
BYMONTH, BYHOUR, BYMINUTE, BYSECOND, BYSETPOS, BYYEARDAY, BYWEEKNO, WKST, and a DTSTART line with
an optional TZID. An RRULE is provisioned natively when one AWS cron states exactly the same
instants (checked structurally, then confirmed by comparing occurrences); otherwise chained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dateutil import rrule as du_rrule

from service.domain.errors import InvalidSchedule
from service.domain.schedules._calendar import MAX_YEAR, take_fires, wall_clock_start
from service.domain.schedules._zones import load_zone, to_local_naive
from service.domain.schedules.aws import DAY_NAMES, MAX_EXPRESSION_LENGTH
from service.domain.schedules.unix_cron import render_values, render_weekdays

FIELD = "schedule.rrule"
_KEYS = {
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "BYDAY",
    "BYMONTHDAY",
    "BYMONTH",
    "BYHOUR",
    "BYMINUTE",
    "BYSECOND",
    "BYSETPOS",
    "BYYEARDAY",
    "BYWEEKNO",
    "WKST",
}
_FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY")
_DTSTART = re.compile(
    r"DTSTART(?:;TZID=(?P<tz>[^:;]+))?(?:;VALUE=DATE(?:-TIME)?)?:"
    r"(?P<date>\d{8})(?:T(?P<time>\d{6})(?P<z>Z)?)?",
    re.IGNORECASE,
)
_STAMP = re.compile(r"(\d{8})(?:T(\d{6})(Z)?)?")
_BYDAY = re.compile(r"([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)")
_ICAL_DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")  # index + 1 = AWS day number
# Far enough to exhaust any rule, near enough that a rule that never matches ends quickly.
_HORIZON = datetime(MAX_YEAR, 12, 31, 23, 59, 59)


@dataclass(frozen=True)
class RRuleSchedule:
    """A parsed RRULE: wall-clock occurrences in `zone_name`, from the naive local `dtstart`."""

    parts: dict[str, str]
    dtstart: datetime
    zone_name: str
    until: datetime | None  # naive local, inclusive
    rule: du_rrule.rrule

    @property
    def text(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.parts.items())

    def fire_times(
        self,
        *,
        after: datetime,
        count: int,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[datetime]:
        """Next `count` aware-UTC instants strictly after `after`, within inclusive bounds."""
        zone = load_zone(self.zone_name)
        lower = after if start is None or start <= after else start - timedelta(microseconds=1)
        if count <= 0:
            return []
        walls = self.rule.xafter(wall_clock_start(lower, zone), inc=True)
        return take_fires(walls, zone, lower=lower, count=count, end=end)

    def wall_times(self, low: datetime, high: datetime) -> list[datetime]:
        """Naive wall-clock occurrences in [low, high)."""
        return [t for t in self.rule.between(low, high, inc=True) if t < high]


def parse_rrule(
    text: str, *, dtstart: datetime | None, timezone: str | None, now: datetime
) -> RRuleSchedule:
    """Parse RRULE text (a bare rule, an RRULE: line, or DTSTART and RRULE lines).

    `dtstart` (naive = wall time in the zone, or aware) overrides a DTSTART line; with neither,
    the rule starts at `now`, to the minute. A TZID must agree with `timezone` when both are given.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchedule(FIELD, "is empty: write e.g. FREQ=WEEKLY;BYDAY=MO;BYHOUR=9")
    rule_line: str | None = None
    line_start: datetime | None = None
    line_zone: str | None = None
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        upper = line.upper()
        if upper.startswith("DTSTART"):
            line_start, line_zone = _parse_dtstart_line(line)
        elif upper.startswith("RRULE:"):
            rule_line = line[len("RRULE:") :]
        elif ":" in line:
            raise InvalidSchedule(FIELD, f"{line!r}: only DTSTART and RRULE lines are supported")
        else:
            rule_line = line
    if rule_line is None:
        raise InvalidSchedule(FIELD, "has no RRULE (FREQ=...)")
    if timezone is not None and line_zone is not None and timezone != line_zone:
        raise InvalidSchedule(
            FIELD, f"TZID {line_zone} disagrees with schedule.timezone {timezone}"
        )
    zone_name = line_zone or timezone or "UTC"
    zone = load_zone(zone_name, "schedule.timezone")
    if dtstart is not None:
        start_local = to_local_naive(dtstart, zone) if dtstart.tzinfo else dtstart
    elif line_start is not None:
        start_local = to_local_naive(line_start, zone) if line_start.tzinfo else line_start
    else:
        start_local = to_local_naive(now, zone).replace(second=0, microsecond=0)
    parts = _parse_parts(rule_line, zone)
    until = None
    if "UNTIL" in parts:
        until = _parse_stamp(parts["UNTIL"], zone, "UNTIL")
        parts["UNTIL"] = f"{until:%Y%m%dT%H%M%S}"
    dateutil_text = ";".join(f"{k}={v}" for k, v in parts.items())
    if "UNTIL" not in parts and "COUNT" not in parts:
        dateutil_text += f";UNTIL={_HORIZON:%Y%m%dT%H%M%S}"
    try:
        rule = du_rrule.rrulestr("RRULE:" + dateutil_text, dtstart=start_local)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidSchedule(FIELD, f"{rule_line!r} is not a valid RRULE ({exc})") from exc
    assert isinstance(rule, du_rrule.rrule)
    return RRuleSchedule(parts, start_local, zone_name, until, rule)


def _parse_dtstart_line(line: str) -> tuple[datetime, str | None]:
    match = _DTSTART.fullmatch(line)
    if match is None:
        raise InvalidSchedule(FIELD, f"{line!r} must look like DTSTART;TZID=Zone:20260105T090000")
    zone_name = match.group("tz")
    if zone_name is not None:
        load_zone(zone_name, FIELD)
    stamp = match.group("date") + ("T" + match.group("time") if match.group("time") else "")
    value = _stamp(stamp + ("Z" if match.group("z") else ""), "DTSTART")
    return value, zone_name


def _stamp(text: str, what: str) -> datetime:
    match = _STAMP.fullmatch(text)
    if match is None:
        raise InvalidSchedule(FIELD, f"{what} {text!r} must be YYYYMMDD or YYYYMMDDTHHMMSS[Z]")
    date, time, z = match.groups()
    try:
        value = datetime.strptime(date + (time or "000000"), "%Y%m%d%H%M%S")
    except ValueError as exc:
        raise InvalidSchedule(FIELD, f"{what} {text!r} is not a real date ({exc})") from exc
    return value.replace(tzinfo=UTC) if z else value


def _parse_stamp(text: str, zone: Any, what: str) -> datetime:
    value = _stamp(text, what)
    return to_local_naive(value, zone) if value.tzinfo else value


def _parse_parts(rule_line: str, zone: Any) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in rule_line.strip().strip(";").split(";"):
        key, eq, value = item.partition("=")
        key = key.strip().upper()
        value = value.strip().upper()
        if not eq or not value:
            raise InvalidSchedule(FIELD, f"{item!r} must be KEY=VALUE")
        if key not in _KEYS:
            raise InvalidSchedule(FIELD, f"{key} is not supported (use {', '.join(sorted(_KEYS))})")
        if key in parts:
            raise InvalidSchedule(FIELD, f"{key} appears twice")
        parts[key] = value
    freq = parts.get("FREQ")
    if freq is None:
        raise InvalidSchedule(FIELD, "FREQ is required")
    if freq == "SECONDLY":
        raise InvalidSchedule(
            FIELD, "FREQ=SECONDLY is finer than EventBridge's one-minute precision"
        )
    if freq not in _FREQS:
        raise InvalidSchedule(FIELD, f"FREQ={freq} must be one of {', '.join(_FREQS)}")
    if "COUNT" in parts and "UNTIL" in parts:
        raise InvalidSchedule(FIELD, "COUNT and UNTIL cannot both be given")
    for key in ("INTERVAL", "COUNT"):
        if key in parts and (not parts[key].isdigit() or int(parts[key]) < 1):
            raise InvalidSchedule(FIELD, f"{key}={parts[key]} must be a positive whole number")
    for key in ("BYMONTH", "BYHOUR", "BYMINUTE", "BYSECOND", "BYMONTHDAY", "BYSETPOS"):
        if key in parts:
            _int_list(parts[key], key)
    if "BYDAY" in parts:
        for token in parts["BYDAY"].split(","):
            if _BYDAY.fullmatch(token) is None:
                raise InvalidSchedule(FIELD, f"BYDAY entry {token!r} must be like MO, 2TU or -1FR")
    return parts


def _int_list(text: str, key: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise InvalidSchedule(FIELD, f"{key}={text} must be a list of whole numbers") from exc


def native_cron(schedule: RRuleSchedule) -> str | None:
    """The AWS cron expression stating exactly the rule's occurrences, or None.

    The caller bounds it with StartDate = DTSTART and EndDate = UNTIL, and confirms the match.
    """
    parts, start = schedule.parts, schedule.dtstart
    if any(k in parts for k in ("COUNT", "BYSETPOS", "BYYEARDAY", "BYWEEKNO")):
        return None
    if parts.get("INTERVAL", "1") != "1" or start.second or parts.get("BYSECOND", "0") != "0":
        return None
    freq = parts["FREQ"]
    rank = _FREQS.index(freq)  # 0 = YEARLY ... 5 = MINUTELY

    def values(key: str, default: tuple[int, ...], low: int, high: int) -> tuple[int, ...] | None:
        if key not in parts:
            return default
        found = sorted(set(_int_list(parts[key], key)))
        return tuple(found) if all(low <= v <= high for v in found) else None

    minutes = values("BYMINUTE", tuple(range(60)) if rank == 5 else (start.minute,), 0, 59)
    hours = values("BYHOUR", tuple(range(24)) if rank >= 4 else (start.hour,), 0, 23)
    months = values("BYMONTH", (start.month,) if rank == 0 else tuple(range(1, 13)), 1, 12)
    if minutes is None or hours is None or months is None:
        return None
    days = _native_days(parts, start, freq)
    if days is None:
        return None
    dom, dow = days
    fields = (
        render_values(minutes, 0, 59),
        render_values(hours, 0, 23),
        dom,
        render_values(months, 1, 12),
        dow,
        "*",
    )
    text = f"cron({' '.join(fields)})"
    return text if len(text) <= MAX_EXPRESSION_LENGTH else None


def _native_days(parts: dict[str, str], start: datetime, freq: str) -> tuple[str, str] | None:
    byday = parts.get("BYDAY")
    bymonthday = parts.get("BYMONTHDAY")
    if byday and bymonthday:
        return None
    if bymonthday:
        if freq == "WEEKLY":
            return None
        days = sorted(set(_int_list(bymonthday, "BYMONTHDAY")))
        if days == [-1]:
            return "L", "?"
        if any(d < 1 or d > 31 for d in days):
            return None
        return render_values(tuple(days), 1, 31), "?"
    if byday:
        tokens = [_BYDAY.fullmatch(t) for t in byday.split(",")]
        ordinals = [m.group(1) for m in tokens if m is not None and m.group(1)]
        numbers = [_ICAL_DAYS.index(m.group(2)) + 1 for m in tokens if m is not None]
        if freq == "YEARLY" and "BYMONTH" not in parts:
            return None
        if ordinals:
            if len(tokens) != 1 or freq not in ("MONTHLY", "YEARLY"):
                return None
            # AWS documents the numeric forms (6L, 3#2); emit those rather than FRIL or TUE#2.
            nth, number = int(ordinals[0]), numbers[0]
            if nth == -1:
                return "?", f"{number}L"
            return ("?", f"{number}#{nth}") if 1 <= nth <= 5 else None
        return "?", render_weekdays(tuple(sorted(set(numbers))))
    if freq in ("MONTHLY", "YEARLY"):
        return str(start.day), "?"
    if freq == "WEEKLY":
        return "?", DAY_NAMES[(start.weekday() + 1) % 7]
    return "*", "?"
