"""The schedule language: EventBridge expressions, unix cron, presets and RRULE.

Public API (other code and outside checks call these):
- `parse_aws_expression(text)` -> AtExpression | RateExpression | CronExpression
- `next_fire_times(expression, *, timezone="UTC", after, count=5, start=None, end=None)`
- `compile_schedule(spec, *, now)` -> CompiledSchedule
Everything raises `service.domain.errors.InvalidSchedule` for bad input.
"""

from service.domain.schedules.aws import (
    AtExpression,
    AwsExpression,
    CronExpression,
    RateExpression,
    parse_aws_expression,
)
from service.domain.schedules.compiler import (
    KINDS,
    ONE_TIME_KINDS,
    CompiledSchedule,
    ScheduleSpec,
    at_expression,
    compile_schedule,
    explain,
)
from service.domain.schedules.evaluate import next_fire_times

__all__ = [
    "KINDS",
    "ONE_TIME_KINDS",
    "AtExpression",
    "AwsExpression",
    "CompiledSchedule",
    "CronExpression",
    "RateExpression",
    "ScheduleSpec",
    "at_expression",
    "compile_schedule",
    "explain",
    "next_fire_times",
    "parse_aws_expression",
]
