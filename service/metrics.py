"""`GET /metrics`: Prometheus text exposition, written by hand (no client library).

Two kinds of figures:
- read from the database at scrape time, so every process reports the same: tasks by status,
  executions by status, outbox depth of the local engine;
- counted in this process since it started: executions recorded, their duration and lateness
  (histograms), scheduler errors and throttles, reconciler repairs, rate-limited requests.
Only aggregates over all tenants: no ids, names or secrets.

On Lambda every process is short-lived and alone, so the same figures also leave as CloudWatch
embedded-metric (EMF) lines on stdout, written with the standard library (namespace Timebridge,
dimension Stage): each recorded execution (Executions by Status, ExecutionDuration in
milliseconds, ExecutionLateness in seconds: CloudWatch keeps the distribution, so percentiles
replace the histograms), each counter increment (SchedulerErrors by Code, ReconcilerRepairs,
RateLimited), and the database gauges (Tasks and StoredExecutions by Status) when the sweeper
calls `publish_gauges` once a minute.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Execution, LocalFiring, Task

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENESS_BUCKETS = (0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.observed = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.observed += 1


class Metrics:
    """This process's counters and histograms; thread-safe."""

    def __init__(self, *, emf: EmfWriter | None = None) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.duration = _Histogram(DURATION_BUCKETS)
        self.lateness = _Histogram(LATENESS_BUCKETS)
        self.emf = emf

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self.counters[(name, tuple(sorted(labels.items())))] += amount
        if self.emf is not None:
            self.emf.counter(name, amount, labels)

    def observe_execution(
        self, status: str, latency_ms: int | None, late_seconds: float | None
    ) -> None:
        with self._lock:
            self.counters[("timebridge_executions_recorded_total", (("status", status),))] += 1
            if latency_ms is not None:
                self.duration.observe(latency_ms / 1000)
            if late_seconds is not None:
                self.lateness.observe(late_seconds)
        if self.emf is not None:
            self.emf.execution(status, latency_ms, late_seconds)

    def publish_gauges(self, sessions: sessionmaker[Session]) -> None:
        """Tasks and stored executions by status as EMF lines (Lambda's sweeper); nothing
        without an EMF writer."""
        if self.emf is None:
            return
        tasks, executions = _status_counts(sessions)
        for metric, counts in (("Tasks", tasks), ("StoredExecutions", executions)):
            for status, value in counts:
                self.emf.line({metric: ("Count", value)}, {"Status": status})

    def render(self, sessions: sessionmaker[Session] | None = None) -> str:
        lines: list[str] = []
        if sessions is not None:
            lines.extend(_database_gauges(sessions))
        with self._lock:
            by_name: dict[str, list[str]] = defaultdict(list)
            for (name, labels), value in sorted(self.counters.items()):
                by_name[name].append(f"{name}{_labels(labels)} {value:g}")
            for name, samples in by_name.items():
                lines.append(f"# TYPE {name} counter")
                lines.extend(samples)
            lines.extend(
                _histogram(
                    "timebridge_execution_duration_seconds",
                    self.duration,
                    "Time the target took to answer",
                )
            )
            lines.extend(
                _histogram(
                    "timebridge_execution_lateness_seconds",
                    self.lateness,
                    "Start of an attempt after its planned time",
                )
            )
        return "\n".join(lines) + "\n"


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    pairs = [f'{key}="{_escape(value)}"' for key, value in labels]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _histogram(name: str, histogram: _Histogram, help_text: str) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    running = 0
    for bound, count in zip(histogram.buckets, histogram.counts, strict=False):
        running += count
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {histogram.observed}')
    lines.append(f"{name}_sum {histogram.total:g}")
    lines.append(f"{name}_count {histogram.observed}")
    return lines


def _status_counts(
    sessions: sessionmaker[Session],
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    with sessions() as session:
        tasks = session.execute(select(Task.status, func.count()).group_by(Task.status)).all()
        executions = session.execute(
            select(Execution.status, func.count()).group_by(Execution.status)
        ).all()
    return [(s, int(c)) for s, c in tasks], [(s, int(c)) for s, c in executions]


def _database_gauges(sessions: sessionmaker[Session]) -> list[str]:
    tasks, executions = _status_counts(sessions)
    with sessions() as session:
        outbox = session.scalar(select(func.count()).select_from(LocalFiring)) or 0
    lines = ["# HELP timebridge_tasks Tasks by status", "# TYPE timebridge_tasks gauge"]
    lines += [f'timebridge_tasks{{status="{status}"}} {count}' for status, count in tasks]
    lines += [
        "# HELP timebridge_executions Executions kept in history, by status",
        "# TYPE timebridge_executions gauge",
    ]
    lines += [f'timebridge_executions{{status="{status}"}} {count}' for status, count in executions]
    lines += [
        "# HELP timebridge_engine_outbox Occurrences taken off schedules, not yet delivered",
        "# TYPE timebridge_engine_outbox gauge",
        f"timebridge_engine_outbox {outbox}",
    ]
    return lines


# Counter names on /metrics -> EMF metric names.
_EMF_NAMES = {
    "timebridge_scheduler_errors_total": "SchedulerErrors",
    "timebridge_reconciler_repairs_total": "ReconcilerRepairs",
    "timebridge_rate_limited_total": "RateLimited",
    "timebridge_executions_recorded_total": "Executions",
}


class EmfWriter:
    """Writes CloudWatch embedded-metric-format lines (one JSON object per line) to `write`
    (stdout by default, which Lambda ships to CloudWatch Logs)."""

    NAMESPACE = "Timebridge"

    def __init__(
        self,
        stage: str,
        *,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stage = stage
        self.write = write or (lambda text: print(text, flush=True))
        self.clock = clock

    def line(self, values: dict[str, tuple[str, float]], dimensions: dict[str, str]) -> None:
        """One EMF object: `values` maps metric name -> (unit, value)."""
        names = {"Stage": self.stage, **dimensions}
        document: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(self.clock() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.NAMESPACE,
                        "Dimensions": [list(names)],
                        "Metrics": [
                            {"Name": name, "Unit": unit} for name, (unit, _) in values.items()
                        ],
                    }
                ],
            },
            **names,
            **{name: value for name, (_, value) in values.items()},
        }
        self.write(json.dumps(document, separators=(",", ":")))

    def counter(self, name: str, amount: float, labels: dict[str, str]) -> None:
        metric = _EMF_NAMES.get(name) or "".join(
            part.capitalize() for part in name.removeprefix("timebridge_").split("_")
        )
        dimensions = {key.capitalize(): value for key, value in sorted(labels.items())}
        self.line({metric: ("Count", amount)}, dimensions)

    def execution(self, status: str, latency_ms: int | None, late_seconds: float | None) -> None:
        values: dict[str, tuple[str, float]] = {"Executions": ("Count", 1)}
        if latency_ms is not None:
            values["ExecutionDuration"] = ("Milliseconds", latency_ms)
        if late_seconds is not None:
            values["ExecutionLateness"] = ("Seconds", late_seconds)
        self.line(values, {"Status": status})
