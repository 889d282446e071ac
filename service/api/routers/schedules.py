"""`POST /v1/schedules/explain`: what a schedule provisions as on AWS and when it fires.

The schedule object goes to the domain compiler untouched, so this endpoint validates exactly as
task creation will; pydantic here only checks the envelope (an object, a count in range).
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import ClockDep
from service.api.errors import error_envelope_response

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule: dict[str, Any] = Field(
        description="A schedule as in a task body: `kind` plus that kind's fields "
        "(see the schedule kinds in the README)."
    )
    count: int = Field(default=5, ge=1, le=100, strict=True, description="How many fires to list.")


class FireTime(BaseModel):
    utc: str = Field(description="The instant in UTC, e.g. 2026-01-05T00:00:00Z.")
    local: str = Field(description="The same instant in the schedule's time zone, with offset.")


class ExplainResponse(BaseModel):
    aws_expression: str | None = Field(
        description="The EventBridge expression provisioned now; in chained mode the at() of "
        "the next fire; null when the schedule never fires again."
    )
    mode: Literal["native", "chained"]
    description: str
    warnings: list[str]
    next_fire_times: list[FireTime]


_EXAMPLES: dict[str, Any] = {
    "weekday-mornings": {
        "summary": "Unix cron, weekdays 09:00 in Seoul (native)",
        "value": {
            "schedule": {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"},
            "count": 5,
        },
    },
    "last-friday": {
        "summary": "RRULE, last Friday of the month at 17:00 in Berlin",
        "value": {
            "schedule": {
                "kind": "rrule",
                "rrule": "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0",
                "timezone": "Europe/Berlin",
            },
            "count": 3,
        },
    },
    "first-or-monday": {
        "summary": "Unix cron restricting both day fields (chained)",
        "value": {"schedule": {"kind": "cron", "expression": "0 9 1 * 1"}, "count": 5},
    },
}


@router.post(
    "/explain",
    summary="Explain a schedule",
    responses={
        422: error_envelope_response(
            "INVALID_SCHEDULE naming the field at fault, or VALIDATION_ERROR"
        )
    },
)
def explain_schedule(
    body: Annotated[ExplainRequest, Body(openapi_examples=_EXAMPLES)],
    clock: ClockDep,
) -> ExplainResponse:
    """The AWS expression, mode, description, warnings and the next fires (UTC and local) of a
    schedule, validated as task creation validates it. Raises InvalidSchedule (422)."""
    now = clock()
    from service.domain.schedules import compile_schedule, explain  # first use: cold start

    compiled = compile_schedule(body.schedule, now=now)
    return ExplainResponse.model_validate(explain(compiled, now=now, count=body.count))
