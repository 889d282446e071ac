"""Local engine benchmark (issue "Embedded local engine").

Workload: 100,000 schedules, 10,000 of them due in the same second (a cron() minute), the rest
far in the future; every firing is an HTTP POST to a loopback sink running in its own process,
which notes when each call arrives and which scheduled time it carries.

- ours: the embedded engine on a SQLite file (WAL), the full local path per firing: outbox
  claim, proxy handler (guard, Standard Webhooks signing, urllib3) and recorder (execution row).
- baseline, in the same run: APScheduler 3.x BackgroundScheduler, MemoryJobStore (its fastest
  store: nothing persisted), ThreadPoolExecutor with the same number of workers, CronTrigger
  jobs whose function POSTs the same request with urllib3. Each side runs in a fresh process.

Prints one JSON line: fired and expected (ours), p99_lateness_s (ours: arrival at the sink
minus the scheduled time; goal <= 1.0), peak_rss_mb (ours, the engine process; goal <= 400),
throughput_ratio_vs_apscheduler (burst deliveries per second, ours over APScheduler's; goal
>= 3.0), and the same figures for the baseline.

Usage: python bench/local_engine.py [--json] [--schedules N] [--due N] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve()
FAR_CRON = "cron(0 3 1 1 ? *)"  # 03:00 UTC on 1 January: never during the run


# --- the sink ----------------------------------------------------------------------------------


class _SinkProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to the sink: each request (head plus a
    Content-Length body) is noted on arrival and answered 200 at once. An asyncio protocol
    rather than a thread per connection, so the sink is not what bounds the burst."""

    arrivals: ClassVar[list[tuple[float, str]]] = []

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length, scheduled = 0, ""
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name in ("timebridge-scheduled-time", "x-scheduled-time"):
                    scheduled = value.strip()
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            self.buffer = self.buffer[end + 4 + length :]
            _SinkProtocol.arrivals.append((time.time(), scheduled))
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def run_sink(out: Path) -> None:
    """Serve until stdin closes, then write the arrivals to `out`."""

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_SinkProtocol, "127.0.0.1", 0, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(serve())
    out.write_text(json.dumps(_SinkProtocol.arrivals))


# --- the two sides -----------------------------------------------------------------------------


def due_minute(setup_seconds: float) -> datetime:
    """The first whole minute at least `setup_seconds` away."""
    now = datetime.now(UTC)
    start = (now + timedelta(seconds=setup_seconds)).replace(second=0, microsecond=0)
    return start + timedelta(minutes=1)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(port: int, schedules: int, due: int, workers: int) -> dict[str, Any]:
    import ipaddress

    from sqlalchemy import insert

    from proxy_lambda.settings import ProxySettings
    from service.adapters.db.models import LocalFiring, LocalSchedule, Task, Tenant
    from service.adapters.db.session import make_engine, make_session_factory, upgrade
    from service.adapters.invoke import LocalDelivery
    from service.adapters.scheduler.engine import ENGINE_LOOKAHEAD, LocalEngine
    from service.adapters.scheduler.local import LocalSchedulerBackend
    from service.application.recorder import Recorder
    from service.domain.provisioning import schedule_name_for
    from service.domain.tasks import schedule_input

    workdir = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    engine = make_engine(f"sqlite:///{workdir}/bench.db")
    upgrade(engine)
    sessions = make_session_factory(engine)
    began = time.monotonic()
    when = due_minute(60)
    now = datetime.now(UTC)
    tenant = str(uuid.uuid4())
    url = f"http://127.0.0.1:{port}/hook"
    with sessions() as session:
        session.add(Tenant(id=tenant, name="bench", created_at=now))
        session.commit()
    far = datetime(now.year + 1, 1, 1, 3, 0, tzinfo=UTC)
    for offset in range(0, schedules, 5000):
        tasks, rows = [], []
        for i in range(offset, min(schedules, offset + 5000)):
            task_id = str(uuid.uuid4())
            hot = i < due
            expression = f"cron({when.minute} {when.hour} * * ? *)" if hot else FAR_CRON
            target = {
                "type": "http",
                "url": url,
                "method": "POST",
                "headers": {},
                "query": {},
                "body": {"i": i},
                "timeout_seconds": 30,
            }
            tasks.append(
                {
                    "id": task_id,
                    "tenant_id": tenant,
                    "name": f"b{i}",
                    "status": "scheduled",
                    "enabled": True,
                    "version": 1,
                    "schedule": {"kind": "cron"},
                    "kind": "cron",
                    "mode": "native",
                    "timezone": "UTC",
                    "aws_expression": expression,
                    "expression_timezone": "UTC",
                    "target": target,
                    "retry": {"max_attempts": 1, "base_delay_seconds": 60, "max_delay_seconds": 60},
                    "callback": {"enabled": False, "timeout_seconds": 3600},
                    "task_metadata": {},
                    "schedule_name": schedule_name_for(task_id),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            rows.append(
                {
                    "name": schedule_name_for(task_id),
                    "arn": f"arn:aws:scheduler:local:000000000000:schedule/b/{task_id}",
                    "expression": expression,
                    "expression_timezone": "UTC",
                    "input": schedule_input(
                        task_id=task_id,
                        tenant_id=tenant,
                        target=target,
                        callback={"enabled": False},
                    ),
                    "enabled": True,
                    "delete_after_completion": False,
                    "description": "",
                    "created_at": now,
                    "updated_at": now,
                    "next_fire_at": when if hot else far,
                }
            )
        with sessions() as session:
            session.execute(insert(Task), tasks)
            session.execute(insert(LocalSchedule), rows)
            session.commit()
    setup = time.monotonic() - began
    backend = LocalSchedulerBackend(sessions)
    recorder = Recorder(sessions, backend)
    settings = ProxySettings(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    local = LocalEngine(
        sessions,
        LocalDelivery(recorder, settings),
        workers=workers,
        lookahead=ENGINE_LOOKAHEAD,
    )
    local.start()
    deadline = time.time() + (when - datetime.now(UTC)).total_seconds() + 300
    while time.time() < deadline:
        time.sleep(0.5)
        if local.stats.delivered >= due:
            with sessions() as session:
                if session.query(LocalFiring).count() == 0:
                    break
    local.stop()
    engine.dispose()
    shutil.rmtree(workdir, ignore_errors=True)  # the 100,000-schedule database, after the run
    return {
        "due_at": when.timestamp(),
        "fired": local.stats.delivered,
        "setup_s": setup,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_apscheduler(port: int, schedules: int, due: int, workers: int) -> dict[str, Any]:
    import urllib3
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    pool = urllib3.PoolManager(maxsize=workers)
    url = f"http://127.0.0.1:{port}/hook"
    done = [0]
    lock = threading.Lock()

    def call(i: int, scheduled: str) -> None:
        pool.request(
            "POST",
            url,
            body=json.dumps({"i": i}).encode(),
            headers={"Content-Type": "application/json", "X-Scheduled-Time": scheduled},
            timeout=30,
        )
        with lock:
            done[0] += 1

    scheduler = BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(workers)},
        job_defaults={"misfire_grace_time": 3600, "coalesce": False, "max_instances": 1},
        timezone="UTC",
    )
    began = time.monotonic()
    when = due_minute(60)
    stamp = f"{when:%Y-%m-%dT%H:%M:%SZ}"
    hot = CronTrigger(minute=when.minute, hour=when.hour, timezone="UTC")
    cold = CronTrigger(month=1, day=1, hour=3, minute=0, timezone="UTC")
    for i in range(schedules):
        scheduler.add_job(call, hot if i < due else cold, args=(i, stamp), id=str(i))
    scheduler.start()
    setup = time.monotonic() - began
    deadline = time.time() + (when - datetime.now(UTC)).total_seconds() + 300
    while time.time() < deadline and done[0] < due:
        time.sleep(0.5)
    scheduler.shutdown(wait=True)
    return {
        "due_at": when.timestamp(),
        "fired": done[0],
        "setup_s": setup,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_ceiling(port: int, schedules: int, due: int, workers: int) -> dict[str, Any]:
    """Not a scheduler: `due` bare POSTs sent at once over `workers` keep-alive connections,
    to measure how many calls a second the sink itself takes on this machine right now."""
    request = (
        f"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\n\r\n{}"
    ).encode()

    async def connection(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()

    async def blast() -> None:
        shares = [due // workers + (1 if i < due % workers else 0) for i in range(workers)]
        await asyncio.gather(*(connection(n) for n in shares if n))

    began = time.time()
    asyncio.run(blast())
    return {"due_at": began, "fired": due, "setup_s": 0.0, "peak_rss_mb": peak_rss_mb()}


# --- orchestration -----------------------------------------------------------------------------


def measure(side: str, schedules: int, due: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "arrivals.json"
        sink = subprocess.Popen(
            [sys.executable, str(HERE), "--role", "sink", "--out", str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert sink.stdout is not None and sink.stdin is not None
        port = int(sink.stdout.readline())
        worker = subprocess.run(
            [
                sys.executable,
                str(HERE),
                "--role",
                side,
                "--port",
                str(port),
                "--schedules",
                str(schedules),
                "--due",
                str(due),
                "--workers",
                str(workers),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        if worker.returncode != 0:
            sink.kill()
            raise SystemExit(f"the {side} side failed:\n{worker.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(worker.stdout.strip().splitlines()[-1])
        sink.stdin.close()
        sink.wait(timeout=60)
        arrivals = json.loads(out.read_text())
    due_at = result["due_at"]
    late = sorted(arrival - due_at for arrival, _ in arrivals)
    result["arrived"] = len(late)
    if late:
        result["p99_lateness_s"] = late[max(0, int(len(late) * 0.99) - 1)]
        result["median_lateness_s"] = statistics.median(late)
        span = max(late[-1], 1e-3)
        result["throughput_per_s"] = len(late) / span
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", choices=["sink", "ours", "apscheduler", "ceiling"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args()
    if args.role == "sink":
        run_sink(args.out)
        return
    if args.role in ("ours", "apscheduler", "ceiling"):
        run = {"ours": run_ours, "apscheduler": run_apscheduler, "ceiling": run_ceiling}[args.role]
        print(json.dumps(run(args.port, args.schedules, args.due, args.workers)))
        return
    ours = measure("ours", args.schedules, args.due, args.workers)
    baseline = measure("apscheduler", args.schedules, args.due, args.workers)
    ceiling = measure("ceiling", args.schedules, args.due, args.workers)
    summary = {
        "fired": ours["fired"],
        "expected": args.due,
        "p99_lateness_s": round(ours.get("p99_lateness_s", float("inf")), 3),
        "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "throughput_ratio_vs_apscheduler": round(
            ours.get("throughput_per_s", 0) / baseline.get("throughput_per_s", float("inf")), 2
        ),
        # What the sink itself takes (bare requests, same concurrency): the bound on both sides.
        "sink_ceiling_ratio_vs_apscheduler": round(
            ceiling.get("throughput_per_s", 0) / baseline.get("throughput_per_s", float("inf")), 2
        ),
        "ours": {k: round(v, 3) if isinstance(v, float) else v for k, v in ours.items()},
        "apscheduler": {k: round(v, 3) if isinstance(v, float) else v for k, v in baseline.items()},
        "sink_ceiling": {k: round(v, 3) if isinstance(v, float) else v for k, v in ceiling.items()},
    }
    if args.json:
        print(json.dumps(summary))
        return
    for key, value in summary.items():
        print(f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
