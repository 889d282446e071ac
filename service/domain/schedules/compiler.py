"""From the API's schedule kinds to what gets provisioned: a `CompiledSchedule`.

`native` schedules are one EventBridge expression (at, rate or cron) with its time zone and bounds.
`chained` schedules have no exact AWS expression (unix cron whose two day fields are both
restricted, RRULE with COUNT/INTERVAL/BYSETPOS, monthly lists mixing L with days, fixed delays):
Timebridge provisions one at() schedule for the next occurrence and the next one after it fires,
so the compiled schedule carries its own evaluator. Both modes answer `next_fire_times` with
EventBridge's daylight-saving rules.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from service.domain.errors import InvalidSchedule
from service.domain.schedules._calendar import (
    MAX_YEAR,
    MIN_YEAR,
    CalendarPattern,
    calendar_fire_times,
    last_day,
)
from service.domain.schedules._zones import (
    as_utc,
    is_ambiguous,
    load_zone,
    resolve_local,
    to_local_naive,
    transitions,
)
from service.domain.schedules.aws import (
    DAY_NAMES,
    CronExpression,
    RateExpression,
    parse_aws_expression,
)
from service.domain.schedules.describe import (
    describe_cron,
    describe_time,
    join_words,
    ordinal,
)
from service.domain.schedules.evaluate import rate_fire_times
from service.domain.schedules.rrule import RRuleSchedule, native_cron, parse_rrule
from service.domain.schedules.unix_cron import (
    parse_unix_cron,
    render_values,
)

Mode = Literal["native", "chained"]

ONE_TIME_KINDS = ("immediate", "once", "delay")
# Kinds whose builders ignore `now`: compiled without hints, the same schedule compiles to the
# same thing at any instant, but for its "never fires after now" warning.
NOW_INDEPENDENT_KINDS = frozenset({"daily", "weekly", "monthly", "cron"})
KINDS = (*ONE_TIME_KINDS, "daily", "weekly", "monthly", "cron", "rate", "rrule", "fixed_delay")
_COMMON = {"kind", "timezone", "start_at", "end_at", "flexible_window_minutes"}
_KIND_FIELDS: dict[str, tuple[set[str], set[str]]] = {  # kind -> (required, optional)
    "immediate": (set(), set()),
    "once": ({"at"}, set()),
    "delay": ({"seconds"}, set()),
    "daily": ({"time"}, set()),
    "weekly": ({"days", "time"}, set()),
    "monthly": ({"days", "time"}, set()),
    "cron": ({"expression"}, set()),
    "rate": ({"expression"}, set()),
    "rrule": ({"rrule"}, {"dtstart"}),
    "fixed_delay": ({"seconds"}, set()),
}
_WEEKDAY_WORDS = {
    "SUNDAY": 1,
    "MONDAY": 2,
    "TUESDAY": 3,
    "WEDNESDAY": 4,
    "THURSDAY": 5,
    "FRIDAY": 6,
    "SATURDAY": 7,
}
_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::(00))?")
MAX_DELAY_SECONDS = 3650 * 86400
MIN_FIXED_DELAY_SECONDS = 60
_WARNING_HORIZON = timedelta(days=366)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule as the API states it (see DESIGN.md, "Schedule kinds")."""

    kind: str
    timezone: str | None = None
    at: str | datetime | None = None
    seconds: int | None = None
    time: str | None = None
    days: tuple[str | int, ...] | None = None
    expression: str | None = None
    rrule: str | None = None
    dtstart: str | datetime | None = None
    start_at: str | datetime | None = None
    end_at: str | datetime | None = None
    flexible_window_minutes: int | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ScheduleSpec:
        """Build a spec from JSON-like data; unknown or misplaced fields are refused."""
        if not isinstance(data, Mapping):
            raise InvalidSchedule("schedule", "must be an object")
        kind = data.get("kind")
        if kind not in _KIND_FIELDS:
            raise InvalidSchedule("schedule.kind", f"{kind!r} must be one of {', '.join(KINDS)}")
        required, optional = _KIND_FIELDS[kind]
        allowed = _COMMON | required | optional
        if kind in ONE_TIME_KINDS:
            allowed -= {"start_at", "end_at"}
        for key in data:
            if key not in allowed:
                raise InvalidSchedule(f"schedule.{key}", f"is not a field of a {kind!r} schedule")
        for key in sorted(required):
            if data.get(key) is None:
                raise InvalidSchedule(f"schedule.{key}", f"is required for a {kind!r} schedule")
        days = data.get("days")
        if days is not None:
            if not isinstance(days, list | tuple) or not days:
                raise InvalidSchedule("schedule.days", "must be a non-empty list")
            days = tuple(days)
        values = {k: data.get(k) for k in allowed if k not in ("kind", "days")}
        for key in ("timezone", "time", "expression", "rrule"):
            _expect(values.get(key), str, key)
        for key in ("at", "dtstart", "start_at", "end_at"):
            _expect(values.get(key), str | datetime, key)
        for key in ("seconds", "flexible_window_minutes"):
            value = values.get(key)
            if isinstance(value, bool):
                raise InvalidSchedule(f"schedule.{key}", "must be a whole number")
            _expect(value, int, key)
        return cls(kind=kind, days=days, **values)


def _expect(value: object, kind: Any, key: str) -> None:
    if value is not None and not isinstance(value, kind):
        name = {str: "a string", int: "a whole number"}.get(kind, "a string or datetime")
        raise InvalidSchedule(f"schedule.{key}", f"must be {name}")


class _Source(Protocol):
    def fire_times(
        self, *, after: datetime, count: int, start: datetime | None, end: datetime | None
    ) -> list[datetime]: ...

    def wall_times(self, low: datetime, high: datetime) -> list[datetime] | None: ...


@dataclass(frozen=True)
class _CalendarSource:
    pattern: CalendarPattern
    zone_name: str

    def fire_times(
        self, *, after: datetime, count: int, start: datetime | None, end: datetime | None
    ) -> list[datetime]:
        zone = load_zone(self.zone_name)
        return calendar_fire_times(
            self.pattern, zone, after=after, count=count, start=start, end=end
        )

    def wall_times(self, low: datetime, high: datetime) -> list[datetime] | None:
        out = []
        for parts in self.pattern.iter_local(low):
            wall = datetime(*parts)
            if wall >= high:
                break
            out.append(wall)
        return out


@dataclass(frozen=True)
class _InstantSource:
    instant: datetime

    def fire_times(
        self, *, after: datetime, count: int, start: datetime | None, end: datetime | None
    ) -> list[datetime]:
        return [self.instant] if count > 0 and self.instant > after else []

    def wall_times(self, low: datetime, high: datetime) -> list[datetime] | None:
        return None


@dataclass(frozen=True)
class _IntervalSource:
    """Elapsed-time steps: rate() from its start, or a fixed delay projected from its first run."""

    first: datetime
    interval: timedelta

    def fire_times(
        self, *, after: datetime, count: int, start: datetime | None, end: datetime | None
    ) -> list[datetime]:
        return rate_fire_times(self.interval, after=after, count=count, start=self.first, end=end)

    def wall_times(self, low: datetime, high: datetime) -> list[datetime] | None:
        return None


@dataclass(frozen=True)
class _RRuleSource:
    schedule: RRuleSchedule

    def fire_times(
        self, *, after: datetime, count: int, start: datetime | None, end: datetime | None
    ) -> list[datetime]:
        return self.schedule.fire_times(after=after, count=count, start=start, end=end)

    def wall_times(self, low: datetime, high: datetime) -> list[datetime] | None:
        return self.schedule.wall_times(low, high)


@dataclass(frozen=True)
class CompiledSchedule:
    """What a task's schedule provisions as, and its evaluator.

    Native: `aws_expression` in `expression_timezone`, bounded by `start`/`end` (aware UTC).
    Chained: `aws_expression` is None; provision `at_expression(next fire)` each time.
    `one_time` schedules use ActionAfterCompletion=DELETE; `fixed_delay_seconds` is set for
    fixed-delay schedules, whose next run is measured from the previous run's completion.
    """

    kind: str
    mode: Mode
    aws_expression: str | None
    expression_timezone: str
    timezone: str
    start: datetime | None
    end: datetime | None
    flexible_window_minutes: int | None
    one_time: bool
    description: str
    warnings: tuple[str, ...]
    fixed_delay_seconds: int | None = None
    source: _Source = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def next_fire_times(self, after: datetime, count: int = 5) -> list[datetime]:
        """The next `count` aware-UTC fire instants strictly after `after` (naive = UTC)."""
        return self.source.fire_times(
            after=as_utc(after), count=count, start=self.start, end=self.end
        )

    def aws_expression_after(self, after: datetime) -> str | None:
        """The expression to provision now: the native one, or at() of the next occurrence."""
        if self.mode == "native":
            return self.aws_expression
        upcoming = self.next_fire_times(after, 1)
        return at_expression(upcoming[0]) if upcoming else None


def at_expression(instant: datetime) -> str:
    """at() in UTC for an instant, rounded up to the whole second (at() has no fraction)."""
    utc = _ceil_second(as_utc(instant))
    return f"at({utc:%Y-%m-%dT%H:%M:%S})"


def _ceil_second(value: datetime) -> datetime:
    if value.microsecond:
        return value.replace(microsecond=0) + timedelta(seconds=1)
    return value


def compile_schedule(
    spec: ScheduleSpec | Mapping[str, Any], *, now: datetime, hints: bool = True
) -> CompiledSchedule:
    """Compile an API schedule into what gets provisioned.

    `hints=False` leaves out the warnings that look ahead from `now` (fires a daylight-saving
    change skips or repeats, months without a matching day): for callers that store the
    schedule and never show them. Nothing provisioned depends on them.

    Raises InvalidSchedule naming the field ("schedule.time", "schedule.expression", ...) and
    the reason for anything AWS or Timebridge would refuse.
    """
    if not isinstance(spec, ScheduleSpec):
        spec = ScheduleSpec.from_mapping(spec)
    now = as_utc(now)
    zone_name = spec.timezone if spec.timezone is not None else "UTC"
    zone = load_zone(zone_name, "schedule.timezone")
    warnings: list[str] = []
    start = _instant(spec.start_at, zone, "schedule.start_at", warnings)
    end = _instant(spec.end_at, zone, "schedule.end_at", warnings)
    if start is not None and end is not None and end <= start:
        raise InvalidSchedule("schedule.end_at", "must be after start_at")
    window = spec.flexible_window_minutes
    if window is not None and not 0 <= window <= 1440:
        raise InvalidSchedule(
            "schedule.flexible_window_minutes", "must be 1-1440 minutes, or 0 for off"
        )
    builder = _BUILDERS[spec.kind]
    built = builder(spec, zone, now, start, end, warnings)
    if built.timezone is not None:
        zone_name, zone = built.timezone, load_zone(built.timezone)
    one_time = spec.kind in ONE_TIME_KINDS
    compiled = CompiledSchedule(
        kind=spec.kind,
        mode=built.mode,
        aws_expression=built.expression,
        # at() is written in UTC (at_expression), so chained schedules are provisioned in UTC.
        expression_timezone="UTC" if one_time or built.mode == "chained" else zone_name,
        timezone=zone_name,
        start=built.start if built.start is not None else start,
        end=built.end if built.end is not None else end,
        flexible_window_minutes=window or None,
        one_time=one_time,
        description=built.description if one_time else f"{built.description} ({zone_name})",
        warnings=(),
        fixed_delay_seconds=spec.seconds if spec.kind == "fixed_delay" else None,
        source=built.source,
    )
    warnings.extend(built.warnings)
    if hints:
        warnings.extend(_dst_warnings(compiled, zone, now))
    if hints and built.pattern is not None:
        warnings.extend(_month_gap_warnings(built.pattern, now, zone, compiled.end))
    if not compiled.next_fire_times(now - _TICK, 1):
        warnings.append(
            "it never fires after now: "
            + ("the time is in the past" if compiled.one_time else "check start, end and days")
        )
    return _replace_warnings(compiled, warnings)


def _replace_warnings(compiled: CompiledSchedule, warnings: list[str]) -> CompiledSchedule:
    return dataclasses.replace(compiled, warnings=tuple(dict.fromkeys(warnings)))


@dataclass
class _Built:
    mode: Mode
    expression: str | None
    description: str
    source: _Source
    start: datetime | None = None
    end: datetime | None = None
    pattern: CalendarPattern | None = None
    warnings: list[str] = field(default_factory=list)
    timezone: str | None = None  # an RRULE's TZID, when the spec named no zone


_Builder = Callable[
    [ScheduleSpec, ZoneInfo, datetime, datetime | None, datetime | None, list[str]], _Built
]


def _instant(
    value: str | datetime | None, zone: ZoneInfo, name: str, warnings: list[str]
) -> datetime | None:
    """An ISO 8601 date-time as aware UTC; naive values are wall time in `zone`."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidSchedule(
                name, f"{value!r} is not an ISO 8601 date-time (e.g. 2026-12-01T09:00:00)"
            ) from exc
    else:
        parsed = value
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    resolved = resolve_local(parsed, zone)
    if resolved is None:
        raise InvalidSchedule(
            name,
            f"{parsed:%Y-%m-%dT%H:%M:%S} does not exist in {zone.key}: "
            "the clocks skip it for daylight saving; pick another time or give an offset",
        )
    if is_ambiguous(parsed, zone):
        warnings.append(
            f"{name.split('.')[-1]} {parsed:%Y-%m-%d %H:%M} happens twice in {zone.key} "
            f"(clocks fall back): the first is used ({resolved:%H:%M} UTC); "
            "give an offset to choose"
        )
    return resolved


def _one_time(instant: datetime, zone: ZoneInfo, what: str) -> _Built:
    instant = _ceil_second(instant)
    description = f"{what} at {instant:%Y-%m-%d %H:%M:%S} UTC"
    if zone.key != "UTC":
        description += f" ({instant.astimezone(zone):%Y-%m-%d %H:%M:%S} {zone.key})"
    return _Built("native", at_expression(instant), description, _InstantSource(instant))


def _build_immediate(
    spec: ScheduleSpec, zone: ZoneInfo, now: datetime, start: Any, end: Any, w: list[str]
) -> _Built:
    return _one_time(now, zone, "Once, right away")


def _build_once(
    spec: ScheduleSpec, zone: ZoneInfo, now: datetime, start: Any, end: Any, w: list[str]
) -> _Built:
    instant = _instant(spec.at, zone, "schedule.at", w)
    assert instant is not None
    built = _one_time(instant, zone, "Once")
    if instant <= now:
        built.warnings.append(
            f"at {instant:%Y-%m-%dT%H:%M:%S}Z is in the past: the schedule would never fire"
        )
    return built


def _build_delay(
    spec: ScheduleSpec, zone: ZoneInfo, now: datetime, start: Any, end: Any, w: list[str]
) -> _Built:
    seconds = _seconds(spec.seconds, 1, MAX_DELAY_SECONDS, "schedule.seconds")
    return _one_time(now + timedelta(seconds=seconds), zone, f"Once, {seconds} s from now,")


def _seconds(value: int | None, low: int, high: int, name: str) -> int:
    assert value is not None
    if not low <= value <= high:
        raise InvalidSchedule(name, f"{value} must be between {low} and {high} seconds")
    return value


def _clock(value: str | None) -> tuple[int, int]:
    match = _TIME.fullmatch(value or "")
    if match is None:
        raise InvalidSchedule("schedule.time", f"{value!r} must be HH:MM (24-hour clock)")
    return int(match.group(1)), int(match.group(2))


def _cron_built(text: str, zone: ZoneInfo, prefix: str = "") -> _Built:
    parsed = parse_aws_expression(text)
    assert isinstance(parsed, CronExpression)
    return _Built(
        "native",
        parsed.text,
        prefix + describe_cron(parsed.fields),
        _CalendarSource(parsed.pattern, zone.key),
        pattern=parsed.pattern,
    )


def _build_daily(
    spec: ScheduleSpec, zone: ZoneInfo, now: datetime, start: Any, end: Any, w: list[str]
) -> _Built:
    hour, minute = _clock(spec.time)
    return _cron_built(f"cron({minute} {hour} * * ? *)", zone)


def _build_weekly(
    spec: ScheduleSpec, zone: ZoneInfo, now: datetime, start: Any, end: Any, w: list[str]
) -> _Built:
    hour, minute = _clock(spec.time)
    numbers: set[int] = set()
    for day in spec.days or ():
        if not isinstance(day, str):
            raise InvalidSchedule("schedule.days", f"{day!r}: name the day, e.g. MON or Monday")
        upper = day.strip().upper()
        if upper in DAY_NAMES:
            numbers.add(DAY_NAMES.index(upper) + 1)
        elif upper in _WEEKDAY_WORDS:
            numbers.add(_WEEKDAY_WORDS[upper])
        else:
            raise InvalidSchedule("schedule.days", f"{day!r} is not a day of the week")
    names = ",".join(DAY_NAMES[n - 1] for n in sorted(numbers))
    if len(numbers) == 7:
        return _cron_built(f"cron({minute} {hour} * * ? *)", zone)
    return _cron_built(f"cron({minute} {hour} ? * {names} *)", zone)


def _build_monthly(
    spec: ScheduleSpec, zone: ZoneInfo, now: datetime, start: Any, end: Any, w: list[str]
) -> _Built:
    hour, minute = _clock(spec.time)
    days: set[int] = set()
    last = False
    for day in spec.days or ():
        if isinstance(day, str) and day.strip().upper() == "L":
            last = True
        elif isinstance(day, int) and not isinstance(day, bool) and 1 <= day <= 31:
            days.add(day)
        else:
            raise InvalidSchedule("schedule.days", f"{day!r} must be a day 1-31 or 'L' (last day)")
    ordered = tuple(sorted(days))
    if not days:
        return _cron_built(f"cron({minute} {hour} L * ? *)", zone)
    if not last:
        return _cron_built(f"cron({minute} {hour} {render_values(ordered, 1, 31)} * ? *)", zone)
    # AWS cannot list L beside other days: fire on their union, one occurrence at a time.
    pattern = CalendarPattern(
        minutes=(minute,),
        hours=(hour,),
        months=tuple(range(1, 13)),
        years=tuple(range(MIN_YEAR, MAX_YEAR + 1)),
        day_rule=lambda y, m: tuple(
            sorted({d for d in ordered if d <= last_day(y, m)} | {last_day(y, m)})
        ),
    )
    words = join_words([ordinal(d) for d in ordered] + ["last day"])
    return _Built(
        "chained",
        None,
        f"At {hour:02d}:{minute:02d}, on the {words} of the month",
        _CalendarSource(pattern, zone.key),
        pattern=pattern,
        warnings=["AWS cron cannot combine L with other days: chained mode, one at() per fire"],
    )


def _build_cron(
    spec: ScheduleSpec, zone: ZoneInfo, now: datetime, start: Any, end: Any, w: list[str]
) -> _Built:
    text = (spec.expression or "").strip()
    try:
        if text.startswith("cron("):
            return _cron_built(text, zone)
        if text.startswith(("rate(", "at(")):
            raise InvalidSchedule("expression", f"{text!r} is not cron: use kind 'rate' or 'once'")
        unix = parse_unix_cron(text, "unix cron")
    except InvalidSchedule as exc:
        raise InvalidSchedule("schedule.expression", str(exc)) from exc
    translated = unix.to_aws()
    if translated is not None:
        built = _cron_built(translated, zone)
        if unix.days_either:  # "either" with a field that covers every day: every day
            built.warnings.append(_EVERY_DAY_WARNING)
        return built
    time_text = describe_time(unix.minutes, unix.hours)
    aws_dom = render_values(unix.days_of_month, 1, 31)
    dow_text = describe_cron(("0", "0", "?", "*", ",".join(str(d) for d in unix.weekdays), "*"))
    day_text = dow_text.split(", ", 1)[1]
    description = (
        f"{time_text[0].upper()}{time_text[1:]}, on day {aws_dom} of the month or {day_text}"
    )
    if len(unix.months) < 12:
        description += f", in months {render_values(unix.months, 1, 12)}"
    warnings = [
        "unix cron fires when EITHER day-of-month or day-of-week matches; AWS cron cannot say "
        "that, so this runs in chained mode (one at() schedule per fire)"
    ]
    fields = unix.source.split()
    if len(fields) == 5 and (fields[2].startswith("*") or fields[4].startswith("*")):
        warnings.append(
            "classic Vixie cron treats a day field starting with '*' (such as */2) as "
            "unrestricted and would need BOTH day fields to match; Timebridge follows POSIX "
            "and fires when either matches"
        )

    return _Built(
        "chained",
        None,
        description,
        _CalendarSource(unix.pattern, zone.key),
        pattern=unix.pattern,
        warnings=warnings,
    )


_EVERY_DAY_WARNING = (
    "one day field covers every day, so with unix's either-day rule this fires every day; "
    "write '*' there if the other field should decide"
)


def _build_rate(
    spec: ScheduleSpec, zone: ZoneInfo, now: datetime, start: Any, end: Any, w: list[str]
) -> _Built:
    text = (spec.expression or "").strip()
    try:
        parsed = parse_aws_expression(text)
    except InvalidSchedule as exc:
        raise InvalidSchedule("schedule.expression", str(exc)) from exc
    if not isinstance(parsed, RateExpression):
        raise InvalidSchedule("schedule.expression", f"{text!r} is not rate(value unit)")
    # Without a start, AWS starts a rate at creation: pin that instant so re-evaluation agrees.
    anchor = start if start is not None else _ceil_second(now)
    unit = parsed.unit if parsed.value == 1 else f"{parsed.value} {parsed.unit}s"
    warnings = []
    if parsed.unit == "day" and transitions(zone, now, now + _WARNING_HORIZON):
        warnings.append(
            f"rate() counts elapsed time: across daylight-saving changes in {zone.key} its "
            "wall-clock time shifts by the change; use daily or cron for a fixed local time"
        )
    local = anchor.astimezone(zone)
    return _Built(
        "native",
        parsed.text,
        f"Every {unit}, starting {local:%Y-%m-%d %H:%M:%S}",
        _IntervalSource(anchor, parsed.interval),
        start=anchor,
        warnings=warnings,
    )


def _build_rrule(
    spec: ScheduleSpec, zone: ZoneInfo, now: datetime, start: Any, end: Any, w: list[str]
) -> _Built:
    dtstart = None
    if spec.dtstart is not None:
        parsed_start = _instant(spec.dtstart, zone, "schedule.dtstart", w)
        assert parsed_start is not None
        dtstart = to_local_naive(parsed_start, zone)
    schedule = parse_rrule(spec.rrule or "", dtstart=dtstart, timezone=spec.timezone, now=now)
    if schedule.zone_name != zone.key:
        zone = load_zone(schedule.zone_name)
    source = _RRuleSource(schedule)
    description = f"RRULE {schedule.text}, from {schedule.dtstart:%Y-%m-%d %H:%M}"
    cron = native_cron(schedule)
    if cron is not None:
        rule_start = resolve_local(schedule.dtstart, zone) or schedule.dtstart.replace(
            tzinfo=zone
        ).astimezone(UTC)
        rule_end = None
        if schedule.until is not None:
            rule_end = schedule.until.replace(tzinfo=zone).astimezone(UTC)
        native = _cron_built(cron, zone)
        lower = max(start or rule_start, rule_start)
        upper = min(end or rule_end, rule_end) if rule_end else end
        probe = max(lower, now) - timedelta(microseconds=1)
        expected = source.fire_times(after=probe, count=60, start=lower, end=upper)
        got = native.source.fire_times(after=probe, count=60, start=lower, end=upper)
        if expected == got:
            native.start, native.end = lower, upper
            native.timezone = schedule.zone_name
            return native
    return _Built(
        "chained",
        None,
        description,
        source,
        warnings=["this RRULE has no exact AWS cron: chained mode, one at() schedule per fire"],
        timezone=schedule.zone_name,
    )


def _build_fixed_delay(
    spec: ScheduleSpec, zone: ZoneInfo, now: datetime, start: Any, end: Any, w: list[str]
) -> _Built:
    seconds = _seconds(spec.seconds, MIN_FIXED_DELAY_SECONDS, MAX_DELAY_SECONDS, "schedule.seconds")
    first = start if start is not None else _ceil_second(now + timedelta(seconds=seconds))
    return _Built(
        "chained",
        None,
        f"{seconds} s after each run completes, "
        f"first at {first.astimezone(zone):%Y-%m-%d %H:%M:%S}",
        _IntervalSource(first, timedelta(seconds=seconds)),
        warnings=[
            "fixed_delay: later fire times depend on when each run completes; "
            "they are shown as if every run took no time"
        ],
    )


_BUILDERS: dict[str, _Builder] = {
    "immediate": _build_immediate,
    "once": _build_once,
    "delay": _build_delay,
    "daily": _build_daily,
    "weekly": _build_weekly,
    "monthly": _build_monthly,
    "cron": _build_cron,
    "rate": _build_rate,
    "rrule": _build_rrule,
    "fixed_delay": _build_fixed_delay,
}


def _dst_warnings(compiled: CompiledSchedule, zone: ZoneInfo, now: datetime) -> list[str]:
    """Name the next fires that a daylight-saving change skips or would repeat."""
    horizon = now + _WARNING_HORIZON
    out: list[str] = []
    for change in transitions(zone, now, horizon):
        before = (change - timedelta(minutes=1)).astimezone(zone).utcoffset()
        after = change.astimezone(zone).utcoffset()
        assert before is not None and after is not None
        jump = after - before
        wall_before = (change + before).replace(tzinfo=None)
        if jump > timedelta(0):  # spring forward: [wall_before, wall_before + jump) is skipped
            low, high = wall_before, wall_before + jump
        else:  # fall back: [wall_before - |jump|, wall_before) happens twice
            low, high = wall_before + jump, wall_before
        walls = compiled.source.wall_times(low, high)
        if not walls:
            continue
        shown = join_words([f"{t:%H:%M}" for t in walls[:3]]) + (" ..." if len(walls) > 3 else "")
        if jump > timedelta(0):
            out.append(
                f"{low:%Y-%m-%d} {shown} does not exist in {zone.key} (clocks jump from "
                f"{low:%H:%M} to {high:%H:%M}): that fire is skipped, as EventBridge does"
            )
        else:
            out.append(
                f"{low:%Y-%m-%d} {shown} happens twice in {zone.key} (clocks fall back from "
                f"{high:%H:%M} to {low:%H:%M}): it fires once, at the first"
            )
    return out


def _month_gap_warnings(
    pattern: CalendarPattern, now: datetime, zone: ZoneInfo, end: datetime | None
) -> list[str]:
    """Warn when some selected months have no matching day (day 31, 5th Monday, Feb 29...)."""
    local = to_local_naive(now, zone)
    missing: list[str] = []
    matched = 0
    year, month = local.year, local.month
    for _ in range(48):
        if year > MAX_YEAR:
            break
        if month in pattern.months and year in pattern.years:
            if pattern.days(year, month):
                matched += 1
            else:
                missing.append(f"{year}-{month:02d}")
        month += 1
        if month == 13:
            year, month = year + 1, 1
    if not missing or not matched:
        return []
    examples = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
    return [
        f"some months have no matching day and are skipped (next: {examples}); "
        "e.g. day 31, a 5th weekday or February 29 do not exist in every month"
    ]


def explain(compiled: CompiledSchedule, *, now: datetime, count: int = 5) -> dict[str, Any]:
    """The `explain` view: expression, mode, description, warnings and the fires at or after
    `now` (UTC and local)."""
    zone = load_zone(compiled.timezone)
    fires = compiled.next_fire_times(as_utc(now) - _TICK, count)  # at or after now
    return {
        "aws_expression": compiled.aws_expression_after(as_utc(now) - _TICK),
        "mode": compiled.mode,
        "description": compiled.description,
        "warnings": list(compiled.warnings),
        "next_fire_times": [
            {
                "utc": f"{t:%Y-%m-%dT%H:%M:%S}Z",
                "local": t.astimezone(zone).isoformat(),
            }
            for t in fires
        ],
    }
