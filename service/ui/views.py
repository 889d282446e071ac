"""What the dashboard draws, computed from the application's own views (plain dicts): the
timeline of a task's next fires, the lateness chart, the CSRF token. No HTML here, no I/O."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.domain.schedules import compile_schedule, explain
from service.domain.schedules._zones import load_zone

# Statuses shown with a word and a symbol as well as a colour (never colour alone).
STATUS_SYMBOLS = {
    "success": "✔",
    "failed": "✖",
    "timeout": "⌛",
    "trigger_failed": "✖",
    "pending": "…",
    "processing": "↻",
    "scheduled": "●",
    "provisioning": "…",
    "paused": "Ⅱ",
    "completed": "✔",
    "cancelled": "\u2013",
}
RETRYABLE = frozenset({"failed", "timeout", "trigger_failed"})


def csrf_token(api_key: str) -> str:
    """The token every dashboard form carries: a MAC of a fixed label under the signed-in key,
    so a page on another site (which cannot read the HttpOnly cookie) cannot forge it, and any
    process of the deployment can check it without shared state."""
    return hmac.new(api_key.encode(), b"timebridge-ui-csrf", hashlib.sha256).hexdigest()[:40]


def csrf_ok(api_key: str, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(csrf_token(api_key), submitted)


def parse_stamp(text: str) -> datetime:
    """A time as the API writes it (`...Z`) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class Fire:
    utc: str
    local: str
    in_words: str
    x: float  # position on the timeline, 0-1000


@dataclass(frozen=True)
class Timeline:
    timezone: str
    fires: list[Fire]
    description: str
    warnings: list[str]
    start_label: str
    end_label: str


def _in_words(delta_seconds: float) -> str:
    seconds = max(0, round(delta_seconds))
    if seconds < 60:
        return f"in {seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 120:
        return f"in {minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"in {hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"in {days} d {hours} h"


def task_timeline(task: dict[str, Any], now: datetime, count: int = 10) -> Timeline | None:
    """The task's next `count` fires (UTC and the task's local time) placed on an axis from now
    to the last one, through the same compiler and `explain` the API uses; None when the task
    does not fire (paused, cancelled, completed, or nothing left)."""
    if not task["next_fire_times"]:
        return None
    compiled = compile_schedule(task["schedule"], now=parse_stamp(task["created_at"]))
    explained = explain(compiled, now=now, count=count)
    fires = explained["next_fire_times"]
    if not fires:
        return None
    moments = [parse_stamp(fire["utc"]) for fire in fires]
    span = max((moments[-1] - now).total_seconds(), 1.0)
    zone = load_zone(compiled.timezone)
    placed = [
        Fire(
            utc=fire["utc"].replace("T", " "),
            local=_local_text(moment, zone),
            in_words=_in_words((moment - now).total_seconds()),
            x=round(1000 * max((moment - now).total_seconds(), 0.0) / span, 1),
        )
        for fire, moment in zip(fires, moments, strict=True)
    ]
    return Timeline(
        timezone=compiled.timezone,
        fires=placed,
        description=explained["description"],
        warnings=explained["warnings"],
        start_label=f"now ({now:%Y-%m-%d %H:%M} UTC)",
        end_label=placed[-1].utc,
    )


def _local_text(moment: datetime, zone: Any) -> str:
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({local:%a})"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    status: str
    label: str


@dataclass(frozen=True)
class LatenessChart:
    bars: list[Bar]
    max_seconds: float
    threshold_y: float | None
    width: int
    height: int
    observed: int


def lateness_chart(
    executions: list[dict[str, Any]], threshold_seconds: float, *, height: int = 160
) -> LatenessChart:
    """One bar per execution with a known lateness, oldest on the left, scaled to the largest
    (at least 1 s); the alert threshold is drawn when it falls inside the scale."""
    known = [e for e in reversed(executions) if e.get("late_seconds") is not None]
    top = max([1.0, *(float(e["late_seconds"]) for e in known)])
    step = 20
    bars = []
    for index, execution in enumerate(known):
        late = max(float(execution["late_seconds"]), 0.0)
        bar_height = max(round(height * late / top, 1), 1.0)
        bars.append(
            Bar(
                x=index * step + 4,
                y=round(height - bar_height, 1),
                height=bar_height,
                status=execution["status"],
                label=f"{execution['scheduled_time']} attempt {execution['attempt']}: "
                f"{late:.2f} s late, {execution['status']}",
            )
        )
    threshold_y = None
    if threshold_seconds <= top:
        threshold_y = round(height - height * threshold_seconds / top, 1)
    return LatenessChart(
        bars=bars,
        max_seconds=top,
        threshold_y=threshold_y,
        width=max(len(bars) * step + 8, 200),
        height=height,
        observed=len(bars),
    )
