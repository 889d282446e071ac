"""What the trigger hooks (issue 9 part A) cost the recorder. Prints a ratio against a baseline
measured in the same run; absolute timings on shared machines are noise.

Both sides record the same outcome records (final successes of one timed task, in batches of
100 as the local engine does) into their own fresh SQLite database holding the same tenant:
the timed task plus `--subscribers` event tasks on unrelated topics and one `after` chain on
another task, so every hook query finds rows but starts nothing. The baseline side has the
hooks (publishing the outcome topic, chains, dependency gates) replaced by no-ops.

- recorder_hooks_ratio: seconds per outcome with the hooks over seconds without. 1.0 = free.

Usage: python bench/trigger_overhead.py [--json] [--outcomes N] [--subscribers N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.adapters.db.session import make_engine, make_session_factory, upgrade
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application import triggers
from service.application.auth import ensure_tenant
from service.application.recorder import Recorder, outcome_from_record
from service.application.tasks import TaskService
from service.domain.executions import format_scheduled_time, occurrence_key

START = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


def record(task_id: str, when: datetime) -> dict[str, Any]:
    return {
        "version": 1,
        "occurrence_key": occurrence_key(task_id, when, 1),
        "task_id": task_id,
        "scheduled_time": format_scheduled_time(when),
        "attempt": 1,
        "started_at": format_scheduled_time(when),
        "status": "success",
        "status_code": 200,
        "latency_ms": 3,
        "response_headers": {},
        "response_body": "ok",
        "response_body_truncated": False,
        "error_kind": None,
        "error": None,
    }


def run_side(workdir: Path, name: str, outcomes: int, subscribers: int, hooks: bool) -> float:
    engine = make_engine(f"sqlite:///{workdir}/{name}.db")
    upgrade(engine)
    sessions = make_session_factory(engine)
    backend = LocalSchedulerBackend(sessions, clock=lambda: START)
    tenant = ensure_tenant(sessions, "bench")
    service = TaskService(sessions, backend, clock=lambda: START)
    target = {"url": "https://svc.internal/hook"}
    timed, _ = service.create(
        tenant,
        {
            "name": "timed",
            "schedule": {"kind": "rate", "expression": "rate(1 minute)"},
            "target": target,
        },
    )
    other, _ = service.create(
        tenant,
        {
            "name": "other",
            "schedule": {"kind": "rate", "expression": "rate(1 hour)"},
            "target": target,
        },
    )
    for i in range(subscribers):
        service.create(
            tenant,
            {
                "name": f"sub-{i}",
                "schedule": {"kind": "event", "topic": f"orders.{i}.**"},
                "target": target,
            },
        )
    service.create(
        tenant,
        {"name": "chain", "schedule": {"kind": "after", "tasks": [other["id"]]}, "target": target},
    )
    recorder = Recorder(sessions, backend, clock=lambda: START + timedelta(days=1))
    saved = (triggers.on_final, triggers.dependents)
    if not hooks:
        triggers.on_final = lambda *args: []
        triggers.dependents = lambda *args: []
    try:
        records = [
            outcome_from_record(record(timed["id"], START + timedelta(minutes=i + 1)))
            for i in range(outcomes)
        ]
        began = time.perf_counter()
        for first in range(0, outcomes, 100):
            recorder.record_outcomes(records[first : first + 100])
        elapsed = time.perf_counter() - began
    finally:
        triggers.on_final, triggers.dependents = saved
        engine.dispose()
    return elapsed / outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--outcomes", type=int, default=2000)
    parser.add_argument("--subscribers", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # Alternate the sides so drift on a shared machine hits both alike; keep the best.
        without: list[float] = []
        with_hooks: list[float] = []
        for round_ in range(2):
            for hooks, times in ((False, without), (True, with_hooks)):
                name = f"{'on' if hooks else 'off'}{round_}"
                times.append(run_side(workdir, name, args.outcomes, args.subscribers, hooks))
    baseline, ours = min(without), min(with_hooks)
    result = {
        "outcomes": args.outcomes,
        "subscribers": args.subscribers,
        "baseline_ms_per_outcome": round(baseline * 1000, 3),
        "hooks_ms_per_outcome": round(ours * 1000, 3),
        "recorder_hooks_ratio": round(ours / baseline, 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
