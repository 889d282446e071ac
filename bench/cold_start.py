"""Cold start of the API Lambda (issue "Infrastructure"). Prints a ratio against a baseline
measured in the same run; absolute timings on shared machines are noise.

- import_ratio: median time to import `service.main` (which builds the app and the Mangum
  `handler`) over the median time to import fastapi and mangum and build a bare one-route app
  with its Mangum handler, the floor any FastAPI-on-Lambda service pays. Both sides run in
  fresh isolated interpreters (`python -I -S`) with only the built API bundle on the path, so
  they load the same packages from the same precompiled bytecode, as on Lambda. Runs
  alternate. Goal <= 1.3.
- api_bundle_mb / proxy_bundle_kb: unzipped size of the bundles (Lambda's limit is 250 MB).

Usage: python bench/cold_start.py [--json] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.bundle import build_bundles, directory_size

TIMED = """
import sys, time
sys.path[:0] = [sys.argv[1]]
started = time.perf_counter()
{body}
print(time.perf_counter() - started)
"""
SERVICE = "from service.main import handler"
BARE = """
from fastapi import FastAPI
from mangum import Mangum
app = FastAPI()

@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}

handler = Mangum(app, lifespan="off")
"""


def cold_import(bundle: Path, body: str, workdir: str) -> float:
    output = subprocess.run(
        [sys.executable, "-I", "-S", "-c", TIMED.format(body=body), str(bundle)],
        capture_output=True,
        text=True,
        check=True,
        cwd=workdir,
        env={"PATH": "/usr/bin:/bin", "TIMEBRIDGE_EMBEDDED_ENGINE": "false"},
    )
    return float(output.stdout.strip().splitlines()[-1])


def measure(runs: int) -> dict[str, float]:
    bundles = build_bundles()
    service: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as workdir:
        cold_import(bundles.api, SERVICE, workdir)  # warm the OS file cache, not Python's
        for _ in range(runs):
            service.append(cold_import(bundles.api, SERVICE, workdir))
            bare.append(cold_import(bundles.api, BARE, workdir))
    service_ms = statistics.median(service) * 1000
    bare_ms = statistics.median(bare) * 1000
    return {
        "import_ratio": service_ms / bare_ms,
        "service_import_ms": service_ms,
        "bare_fastapi_mangum_import_ms": bare_ms,
        "api_bundle_mb": directory_size(bundles.api) / 1e6,
        "proxy_bundle_kb": directory_size(bundles.proxy) / 1e3,
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--runs", type=int, default=15, help="runs per side (>= 10)")
    args = parser.parse_args()
    figures = measure(max(10, args.runs))
    if args.json:
        print(json.dumps({key: round(value, 3) for key, value in figures.items()}))
    else:
        print(
            f"cold import, median of {figures['runs']:.0f} fresh interpreters each:\n"
            f"  service.main handler   {figures['service_import_ms']:7.1f} ms\n"
            f"  bare FastAPI + Mangum  {figures['bare_fastapi_mangum_import_ms']:7.1f} ms\n"
            f"  import_ratio           {figures['import_ratio']:7.2f}  (goal <= 1.3)\n"
            f"API bundle {figures['api_bundle_mb']:.1f} MB, "
            f"proxy bundle {figures['proxy_bundle_kb']:.0f} KB (unzipped)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
