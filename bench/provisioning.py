"""Provisioning benchmark (issue "Provisioning spine"). Prints ratios against baselines measured
in the same run; absolute timings on shared machines are noise.

- create_latency_ratio: median in-process `POST /v1/tasks` (local backend, SQLite) over the
  median of a bare FastAPI endpoint that inserts one row into the same database. Goal <= 1.5.
- batch_quota_ratio: 10,000 tasks through the batch path (ten requests of 1,000, two at a time)
  against an in-process EventBridge emulation that allows 1,000 requests/s, answers
  ThrottlingException beyond that and takes 20 ms a call: achieved create rate / 1,000, from
  the first create to the last. Goal >= 0.95. `batch_end_to_end_ratio` counts the whole run.
- lost / duplicates: tasks without exactly one schedule, and schedules beyond one per task.

Usage: python bench/provisioning.py [--json] [--requests N] [--tasks N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from service.adapters.db.models import Task
from service.adapters.db.session import make_engine, make_session_factory, upgrade
from service.adapters.scheduler.eventbridge import EventBridgeSchedulerBackend
from service.application.auth import ensure_tenant
from service.application.batch import create_many
from service.application.tasks import TaskService
from service.main import create_app
from service.settings import Settings
from tests.support.scheduler_emulator import SchedulerEmulator

KEY = "tb_bench-key"


def task_body(i: int) -> dict[str, Any]:
    return {
        "name": f"bench-{i}",
        "schedule": {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"},
        "target": {"url": f"https://svc.internal/hook/{i}"},
    }


def measure_create_latency(workdir: Path, requests: int) -> dict[str, float]:
    url = f"sqlite:///{workdir}/latency.db"
    settings = Settings(database_url=url, embedded_engine=False, bootstrap_api_key=SecretStr(KEY))
    app = create_app(settings)
    ours = TestClient(app)
    ours.__enter__()  # runs the lifespan: builds, migrates, installs the key
    headers = {"Authorization": f"Bearer {KEY}"}

    engine = make_engine(url)
    table = Table(
        "bench_rows",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(255)),
        Column("body", String(4096)),
    )
    table.metadata.create_all(engine)
    bare_app = FastAPI()

    @bare_app.post("/rows", status_code=201)
    def insert_row(body: dict[str, Any]) -> dict[str, Any]:
        with engine.begin() as connection:
            result = connection.execute(
                table.insert().values(name=body["name"], body=json.dumps(body))
            )
        return {"id": result.inserted_primary_key[0] if result.inserted_primary_key else None}

    bare = TestClient(bare_app)
    bare.__enter__()  # like `ours`: one event loop for the run, not one started per request
    for i in range(100):  # warm both paths (caches, pools, the WAL)
        ours.post("/v1/tasks", json=task_body(i), headers=headers)
        bare.post("/rows", json=task_body(i))
    ours_times: list[float] = []
    bare_times: list[float] = []
    for i in range(requests):  # alternate so drift hits both sides alike
        body = task_body(1000 + i)
        start = time.perf_counter()
        assert ours.post("/v1/tasks", json=body, headers=headers).status_code == 201
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert bare.post("/rows", json=body).status_code == 201
        bare_times.append(time.perf_counter() - start)
    ours.__exit__(None, None, None)
    bare.__exit__(None, None, None)
    return {
        "create_latency_ratio": statistics.median(ours_times) / statistics.median(bare_times),
        "create_median_ms": statistics.median(ours_times) * 1000,
        "bare_insert_median_ms": statistics.median(bare_times) * 1000,
    }


def measure_batch(workdir: Path, tasks: int) -> dict[str, float]:
    engine = make_engine(f"sqlite:///{workdir}/batch.db")
    upgrade(engine)
    sessions = make_session_factory(engine)
    emulator = SchedulerEmulator(rate=1000, burst=50, latency=0.02)
    backend = EventBridgeSchedulerBackend(
        group="bench",
        target_arn="arn:aws:lambda:us-east-1:123456789012:function:proxy",
        role_arn="arn:aws:iam::123456789012:role/scheduler",
        client=emulator,
    )
    service = TaskService(sessions, backend)
    tenant = ensure_tenant(sessions, "bench")
    per_request = 1000
    batches = [
        [task_body(b * per_request + i) for i in range(min(per_request, tasks - b * per_request))]
        for b in range((tasks + per_request - 1) // per_request)
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:  # an importer sending two requests at a time
        results = [
            r for rs in pool.map(lambda b: create_many(service, tenant, b), batches) for r in rs
        ]
    elapsed = time.perf_counter() - start
    surfaced = sum(1 for r in results if r["status"] not in (200, 201))
    with sessions() as session:
        names = list(session.scalars(select(Task.schedule_name)))
        rows = int(session.scalar(select(func.count()).select_from(Task)) or 0)
    scheduled = {name for (_, name) in emulator.schedules}
    lost = sum(1 for name in names if name not in scheduled) + (tasks - rows)
    duplicates = len(emulator.schedules) - len(set(names) & scheduled)
    assert emulator.first_create is not None and emulator.last_create is not None
    window = emulator.last_create - emulator.first_create
    return {
        "batch_quota_ratio": emulator.creates / window / 1000,
        "batch_end_to_end_ratio": tasks / elapsed / 1000,
        "throttle_errors_surfaced": surfaced,
        "throttled_calls_absorbed": emulator.throttled,
        "lost": lost,
        "duplicates": duplicates,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--requests", type=int, default=500, help="timed creates per side")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks through the batch path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        figures = {
            **measure_create_latency(workdir, args.requests),
            **measure_batch(workdir, args.tasks),
        }
    keys = ("create_latency_ratio", "batch_quota_ratio", "lost", "duplicates")
    if args.json:
        print(
            json.dumps(
                {
                    k: round(v, 3) if isinstance(v, float) else v
                    for k, v in figures.items()
                    if k in keys
                }
            )
        )
    else:
        for key, value in figures.items():
            print(f"{key:28} {value:.3f}" if isinstance(value, float) else f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
