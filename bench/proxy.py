"""Proxy Lambda benchmark (issue "HTTP proxy Lambda"). Prints ratios against baselines measured
in the same run; absolute timings on shared machines are noise.

- import_ratio: median cold import of `proxy_lambda.handler` over the median cold import of
  `urllib3` (the floor: the proxy needs it), each timed inside a fresh interpreter around the
  import statement alone, runs alternating. Both sides load bytecode from a private cache
  (PYTHONPYCACHEPREFIX), as a Lambda bundle compiled at build time would. Goal <= 1.2.
  `import_ratio_from_source` is the same with the proxy compiled on every start (no .pyc, as
  under PYTHONDONTWRITEBYTECODE or a bundle shipped without bytecode) against urllib3 as
  installed: what skipping compileall in the bundle costs.
- call_overhead_ratio: median time of one `handle()` call (parse the event, guard, sign, call,
  build the outcome) against a keep-alive loopback server, over the median of raw urllib3
  sending the same bytes (same method, URL, headers and body, connection kept alive, first
  4 KB of the body read). Calls alternate; the server runs in its own process. Goal <= 1.15.

Usage: python bench/proxy.py [--json] [--imports N] [--calls N]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import urllib3

from proxy_lambda.handler import handle
from proxy_lambda.settings import ProxySettings
from proxy_lambda.transport import OutgoingRequest, TargetResponse, Urllib3Sender

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + base64.b64encode(b"timebridge-bench-secret-000001").decode()
IMPORT_PROBE = (
    "import sys, time\n"
    "sys.path.insert(0, {root!r})\n"
    "started = time.perf_counter()\n"
    "import {module}\n"
    "print(time.perf_counter() - started)\n"
)


def cold_import_seconds(module: str, env: dict[str, str]) -> float:
    probe = IMPORT_PROBE.format(root=str(ROOT), module=module)
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    return float(result.stdout)


def import_ratio(runs: int, env: dict[str, str]) -> tuple[float, float, float]:
    for module in ("urllib3", "proxy_lambda.handler"):
        cold_import_seconds(module, env)  # bytecode caches written before timing starts
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(runs):
        floor.append(cold_import_seconds("urllib3", env))
        ours.append(cold_import_seconds("proxy_lambda.handler", env))
    ours_median, floor_median = statistics.median(ours), statistics.median(floor)
    return ours_median / floor_median, ours_median * 1000, floor_median * 1000


def measure_imports(runs: int) -> dict[str, float]:
    plain = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPYCACHE")}
    with tempfile.TemporaryDirectory() as cache:
        compiled = {k: v for k, v in plain.items() if k != "PYTHONDONTWRITEBYTECODE"}
        ratio, ours_ms, floor_ms = import_ratio(runs, {**compiled, "PYTHONPYCACHEPREFIX": cache})
    from_source, _, _ = import_ratio(runs, {**plain, "PYTHONDONTWRITEBYTECODE": "1"})
    return {
        "import_ratio": ratio,
        "import_proxy_ms": ours_ms,
        "import_urllib3_ms": floor_ms,
        "import_ratio_from_source": from_source,
        "import_runs": float(runs),
    }


class CapturingSender:
    """The real sender, remembering the last request so the baseline can send the same one."""

    def __init__(self) -> None:
        self.inner = Urllib3Sender()
        self.last: OutgoingRequest | None = None

    def __call__(self, request: OutgoingRequest, /) -> TargetResponse:
        self.last = request
        return self.inner(request)


def event_for(url: str) -> dict[str, Any]:
    return {
        "version": 1,
        "task_id": "5b0c8a52-6f0e-4d3c-9a3e-2f4f1e9d7c11",
        "tenant_id": "default",
        "attempt": 1,
        "target": {
            "type": "http",
            "url": url,
            "method": "POST",
            "headers": {"X-Trace": "bench"},
            "query": {},
            "body": {"report": "nightly", "full": True},
            "timeout_seconds": 30,
        },
        "callback": {"enabled": True, "timeout_seconds": 3600},
        "context": {
            "schedule_arn": "arn:aws:scheduler:eu-west-1:123456789012:schedule/timebridge/tb-x",
            "scheduled_time": "2026-11-23T09:00:00Z",
            "execution_id": "6f1d2c7e-0000-4000-8000-000000000001",
            "attempt_number": "1",
        },
    }


def measure_calls(calls: int) -> dict[str, float]:
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.proxy.loopback"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/hook"
        settings = ProxySettings.from_env(
            {
                "TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
                "TIMEBRIDGE_SIGNING_SECRET": SECRET,
            }
        )
        sender = CapturingSender()
        event = event_for(url)
        first = handle(event, send=sender, settings=settings)
        if first["status"] != "success" or sender.last is None:
            raise SystemExit(f"the proxy could not call the loopback server: {first}")
        sent = sender.last
        pool = urllib3.PoolManager()
        timeout = urllib3.Timeout(connect=30.0, read=30.0)

        def raw_call() -> None:
            response = pool.request(
                sent.method,
                url,
                body=sent.body,
                headers=sent.headers,
                timeout=timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
            response.read(4097)
            response.release_conn()

        def proxy_call() -> None:
            handle(event, send=sender.inner, settings=settings)

        for _ in range(200):  # warm both paths: connections open, caches filled
            raw_call()
            proxy_call()
        ours: list[int] = []
        floor: list[int] = []
        clock = time.perf_counter_ns
        for _ in range(calls):
            started = clock()
            raw_call()
            floor.append(clock() - started)
            started = clock()
            proxy_call()
            ours.append(clock() - started)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)
    return {
        "call_overhead_ratio": statistics.median(ours) / statistics.median(floor),
        "call_proxy_us": statistics.median(ours) / 1000,
        "call_urllib3_us": statistics.median(floor) / 1000,
        "call_mean_ratio": statistics.fmean(ours) / statistics.fmean(floor),
        "calls": float(calls),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--imports", type=int, default=30, help="fresh interpreters per side")
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per side")
    args = parser.parse_args()
    if args.imports < 20 or args.calls < 2000:
        parser.error("at least 20 imports and 2,000 calls per side")
    figures = {**measure_imports(args.imports), **measure_calls(args.calls)}
    if args.json:
        print(json.dumps({key: round(value, 3) for key, value in figures.items()}))
    else:
        for key, value in figures.items():
            print(f"{key:22} {value:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
