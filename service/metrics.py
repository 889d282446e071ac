"""`GET /metrics`: Prometheus text exposition, written by hand (no client library).

Two kinds of figures:
- read from the database at scrape time, so every process reports the same: tasks by status,
  executions by status, outbox depth of the local engine;
- counted in this process since it started: executions recorded, their duration and lateness
  (histograms), scheduler errors and throttles, reconciler repairs, rate-limited requests.
Only aggregates over all tenants: no ids, names or secrets.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Iterable

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

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.duration = _Histogram(DURATION_BUCKETS)
        self.lateness = _Histogram(LATENESS_BUCKETS)

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self.counters[(name, tuple(sorted(labels.items())))] += amount

    def observe_execution(
        self, status: str, latency_ms: int | None, late_seconds: float | None
    ) -> None:
        with self._lock:
            self.counters[("timebridge_executions_recorded_total", (("status", status),))] += 1
            if latency_ms is not None:
                self.duration.observe(latency_ms / 1000)
            if late_seconds is not None:
                self.lateness.observe(late_seconds)

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


def _database_gauges(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        tasks = session.execute(select(Task.status, func.count()).group_by(Task.status)).all()
        executions = session.execute(
            select(Execution.status, func.count()).group_by(Execution.status)
        ).all()
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
