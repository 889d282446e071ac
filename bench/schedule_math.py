"""Schedule-math benchmark (issue "Schedule language"): the next 1,000 fires of 50 common
expressions, Timebridge's evaluator vs croniter on the same schedules, in UTC, in one run.
Each side includes parsing; both must produce the same 1,000 instants (checked first).

Usage: python bench/schedule_math.py [--json] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from croniter import croniter

from service.domain.schedules import next_fire_times

START = datetime(2026, 1, 1, tzinfo=UTC)
FIRES = 1000

# (unix expression for croniter, the same schedule as an AWS expression). Every entry fires at
# least 1,000 times before 2199, where AWS cron (and so our evaluator) stops.
PAIRS: list[tuple[str, str]] = [
    ("* * * * *", "cron(* * * * ? *)"),
    ("*/5 * * * *", "cron(0/5 * * * ? *)"),
    ("*/10 * * * *", "cron(0/10 * * * ? *)"),
    ("*/15 * * * *", "cron(0/15 * * * ? *)"),
    ("*/30 * * * *", "cron(0/30 * * * ? *)"),
    ("0 * * * *", "cron(0 * * * ? *)"),
    ("30 * * * *", "cron(30 * * * ? *)"),
    ("0,30 * * * *", "cron(0,30 * * * ? *)"),
    ("15,45 * * * *", "cron(15,45 * * * ? *)"),
    ("0 */2 * * *", "cron(0 0/2 * * ? *)"),
    ("0 */3 * * *", "cron(0 0/3 * * ? *)"),
    ("0 */6 * * *", "cron(0 0/6 * * ? *)"),
    ("0 0 * * *", "cron(0 0 * * ? *)"),
    ("0 9 * * *", "cron(0 9 * * ? *)"),
    ("30 6 * * *", "cron(30 6 * * ? *)"),
    ("0 9,17 * * *", "cron(0 9,17 * * ? *)"),
    ("0 8-18 * * *", "cron(0 8-18 * * ? *)"),
    ("0 9 * * 1-5", "cron(0 9 ? * MON-FRI *)"),
    ("30 8 * * 1-5", "cron(30 8 ? * MON-FRI *)"),
    ("0 18 * * 1-5", "cron(0 18 ? * MON-FRI *)"),
    ("*/15 9-17 * * 1-5", "cron(0/15 9-17 ? * MON-FRI *)"),
    ("0 9-17 * * 1-5", "cron(0 9-17 ? * MON-FRI *)"),
    ("0 10 * * 6,0", "cron(0 10 ? * SAT,SUN *)"),
    ("0 0 * * 0", "cron(0 0 ? * SUN *)"),
    ("0 9 * * 1", "cron(0 9 ? * MON *)"),
    ("0 17 * * 5", "cron(0 17 ? * FRI *)"),
    ("0 9 * * 1,3,5", "cron(0 9 ? * MON,WED,FRI *)"),
    ("0 12 * * 2,4", "cron(0 12 ? * TUE,THU *)"),
    ("0 0 1 * *", "cron(0 0 1 * ? *)"),
    ("0 9 1 * *", "cron(0 9 1 * ? *)"),
    ("0 0 1,15 * *", "cron(0 0 1,15 * ? *)"),
    ("0 6 15 * *", "cron(0 6 15 * ? *)"),
    ("0 0 28 * *", "cron(0 0 28 * ? *)"),
    ("0 0 31 * *", "cron(0 0 31 * ? *)"),
    ("0 0 * * 1", "cron(0 0 ? * MON *)"),
    ("0 12 * * *", "cron(0 12 * * ? *)"),
    ("0 0 1,10,20 * *", "cron(0 0 1,10,20 * ? *)"),
    ("0 7 * * 1-6", "cron(0 7 ? * MON-SAT *)"),
    ("0 2 * * 6", "cron(0 2 ? * SAT *)"),
    ("5 4 * * *", "cron(5 4 * * ? *)"),
    ("0 22 * * 1-5", "cron(0 22 ? * MON-FRI *)"),
    ("0 1-23/2 * * *", "cron(0 1/2 * * ? *)"),
    ("10-50/10 * * * *", "cron(10-50/10 * * * ? *)"),
    ("0 0-6 * * *", "cron(0 0-6 * * ? *)"),
    ("*/20 8-20 * * *", "cron(0/20 8-20 * * ? *)"),
    ("0 3 * * 0", "cron(0 3 ? * SUN *)"),
    ("45 23 * * 6", "cron(45 23 ? * SAT *)"),
    ("0 9 1-7 * *", "cron(0 9 1-7 * ? *)"),
    ("0 */4 * 6-8 *", "cron(0 0/4 * 6-8 ? *)"),
    ("0 0 * 1 *", "cron(0 0 * 1 ? *)"),
]


def ours(aws: str) -> list[datetime]:
    return next_fire_times(aws, after=START, count=FIRES)


def theirs(unix: str) -> list[datetime]:
    walker = croniter(unix, START.replace(tzinfo=None))
    return [walker.get_next(datetime).replace(tzinfo=UTC) for _ in range(FIRES)]


def check() -> None:
    for unix, aws in PAIRS:
        mine, other = ours(aws), theirs(unix)
        if mine != other:
            raise SystemExit(f"disagree on {unix!r} / {aws!r}: {len(mine)} vs {len(other)} fires")


def timed(run: Callable[[str], list[datetime]], args: list[str]) -> float:
    start = time.perf_counter()
    for arg in args:
        run(arg)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description="next 1,000 fires of 50 expressions vs croniter")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; best counts")
    args = parser.parse_args()
    assert len(set(PAIRS)) == 50
    check()
    unix = [u for u, _ in PAIRS]
    aws = [a for _, a in PAIRS]
    our_times: list[float] = []
    their_times: list[float] = []
    for _ in range(args.rounds):  # alternate so drift hits both sides alike
        our_times.append(timed(ours, aws))
        their_times.append(timed(theirs, unix))
    speedup = min(their_times) / min(our_times)
    if args.json:
        print(json.dumps({"speedup_vs_croniter": round(speedup, 2)}))
    else:
        print(f"expressions: {len(PAIRS)}, fires each: {FIRES}, rounds: {args.rounds} (best)")
        print(f"timebridge: {min(our_times) * 1000:8.1f} ms")
        print(f"croniter:   {min(their_times) * 1000:8.1f} ms")
        print(f"speedup_vs_croniter: {speedup:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
