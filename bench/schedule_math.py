"""Schedule-math benchmark: the next 1,000 fire times of 50 common cron schedules, computed by
Timebridge's evaluator (AWS `cron(...)` expressions) and by croniter (the same schedules as unix
5-field expressions), in UTC, from a fixed start, in one run.

Before timing, every pair is checked: both sides must give the same instants. Each timed
iteration includes parsing on both sides: one `next_fire_times(count=1000)` call against one
`croniter(...)` construction and 1,000 `get_next` calls. Rounds alternate which side goes first
for each pair, so drift and warm caches favour neither.

AWS cron stops at the year 2199, so a schedule that fires fewer than 1,000 times before then
(yearly, quarterly) is compared and timed over the fires it has: croniter is asked for the same
number, and the check proves croniter's next fire falls after 2199.

Usage (from the repository root):
    .venv/bin/python bench/schedule_math.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from croniter import croniter

from service.domain.schedules.evaluate import next_fire_times

START = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
FIRES = 1000
AWS_LAST_YEAR = 2199  # EventBridge Scheduler's cron year field ends here.
SLOWEST_SHOWN = 5

# (unix 5-field expression for croniter, the same schedule as an AWS cron expression).
# AWS day-of-week numbers run SUN=1 ... SAT=7; unix ones SUN=0 ... SAT=6.
PAIRS: tuple[tuple[str, str], ...] = (
    # Minute-level intervals.
    ("* * * * *", "cron(* * * * ? *)"),
    ("*/2 * * * *", "cron(0/2 * * * ? *)"),
    ("*/5 * * * *", "cron(*/5 * * * ? *)"),
    ("*/10 * * * *", "cron(0/10 * * * ? *)"),
    ("*/15 * * * *", "cron(0/15 * * * ? *)"),
    ("*/30 * * * *", "cron(0/30 * * * ? *)"),
    ("3-59/5 * * * *", "cron(3/5 * * * ? *)"),
    ("10-50/20 * * * *", "cron(10-50/20 * * * ? *)"),
    # Hourly and every few hours.
    ("0 * * * *", "cron(0 * * * ? *)"),
    ("30 * * * *", "cron(30 * * * ? *)"),
    ("0,30 * * * *", "cron(0,30 * * * ? *)"),
    ("15,45 * * * *", "cron(15,45 * * * ? *)"),
    ("0 */2 * * *", "cron(0 0/2 * * ? *)"),
    ("0 1-23/2 * * *", "cron(0 1/2 * * ? *)"),
    ("0 */3 * * *", "cron(0 */3 * * ? *)"),
    ("15 */4 * * *", "cron(15 0/4 * * ? *)"),
    ("0 */6 * * *", "cron(0 0/6 * * ? *)"),
    # Daily.
    ("0 0 * * *", "cron(0 0 * * ? *)"),
    ("0 9 * * *", "cron(0 9 * * ? *)"),
    ("30 2 * * *", "cron(30 2 * * ? *)"),
    ("59 23 * * *", "cron(59 23 * * ? *)"),
    ("0 9,21 * * *", "cron(0 9,21 * * ? *)"),
    ("0 8,12,18 * * *", "cron(0 8,12,18 * * ? *)"),
    ("0,20,40 6,12,18 * * *", "cron(0,20,40 6,12,18 * * ? *)"),
    ("0 9-17 * * *", "cron(0 9-17 * * ? *)"),
    # Weekdays, business hours.
    ("0 9 * * 1-5", "cron(0 9 ? * MON-FRI *)"),
    ("30 8 * * 1-5", "cron(30 8 ? * 2-6 *)"),
    ("0 18 * * MON-FRI", "cron(0 18 ? * MON-FRI *)"),
    ("*/15 9-17 * * 1-5", "cron(0/15 9-17 ? * MON-FRI *)"),
    ("0 9-17 * * 1-5", "cron(0 9-17 ? * 2-6 *)"),
    ("*/5 8-18 * * 1-5", "cron(0/5 8-18 ? * MON-FRI *)"),
    # Weekends and particular weekdays.
    ("0 10 * * 0,6", "cron(0 10 ? * SAT,SUN *)"),
    ("0 * * * 6,0", "cron(0 * ? * 1,7 *)"),
    ("0 0 * * 0", "cron(0 0 ? * SUN *)"),
    ("0 9 * * 1", "cron(0 9 ? * 2 *)"),
    ("0 17 * * 5", "cron(0 17 ? * FRI *)"),
    ("0 9 * * 1,3,5", "cron(0 9 ? * MON,WED,FRI *)"),
    ("30 12 * * 2,4", "cron(30 12 ? * 3,5 *)"),
    ("0 3 * * 6", "cron(0 3 ? * 7 *)"),
    # Days of the month.
    ("0 0 1 * *", "cron(0 0 1 * ? *)"),
    ("0 9 1 * *", "cron(0 9 1 * ? *)"),
    ("0 0 1,15 * *", "cron(0 0 1,15 * ? *)"),
    ("0 12 15 * *", "cron(0 12 15 * ? *)"),
    ("0 6 28 * *", "cron(0 6 28 * ? *)"),
    ("0 9 1-7 * *", "cron(0 9 1-7 * ? *)"),
    ("0 0 */10 * *", "cron(0 0 1/10 * ? *)"),
    ("0 0 28-31 * *", "cron(0 0 28-31 * ? *)"),
    # Months: quarterly, yearly, a season.
    ("0 0 1 */3 *", "cron(0 0 1 1/3 ? *)"),
    ("0 0 1 1 *", "cron(0 0 1 JAN ? *)"),
    ("0 */4 * 6-8 *", "cron(0 0/4 * JUN-AUG ? *)"),
)


@dataclass(frozen=True)
class Case:
    unix: str
    aws: str
    fires: int  # FIRES, or fewer when AWS's year range ends first


@dataclass
class Timings:
    ours: list[float]  # seconds per round
    croniter: list[float]


def our_fires(aws: str) -> list[datetime]:
    return next_fire_times(aws, timezone="UTC", after=START, count=FIRES)


def croniter_fires(unix: str, count: int) -> list[datetime]:
    walker = croniter(unix, START.replace(tzinfo=None))
    out: list[datetime] = []
    for _ in range(count):
        fire: datetime = walker.get_next(datetime)
        out.append(fire.replace(tzinfo=UTC))
    return out


def check_pair(unix: str, aws: str) -> tuple[int, str | None]:
    """The number of fires to time for this pair, and a description of a disagreement if any."""
    mine = our_fires(aws)
    theirs = croniter_fires(unix, FIRES)
    for index, (a, b) in enumerate(zip(mine, theirs, strict=False)):
        if a != b:
            return 0, f"fire #{index + 1}: timebridge {a.isoformat()}, croniter {b.isoformat()}"
    if len(mine) == FIRES:
        return FIRES, None
    if not mine:
        return 0, "timebridge returned no fires"
    following = theirs[len(mine)]
    if following.year <= AWS_LAST_YEAR:
        return 0, (
            f"timebridge stops after {len(mine)} fires (last {mine[-1].isoformat()}), "
            f"croniter goes on with {following.isoformat()}"
        )
    return len(mine), None


def check_all() -> tuple[list[Case], list[str]]:
    cases: list[Case] = []
    problems: list[str] = []
    if len(PAIRS) != 50 or len(set(PAIRS)) != len(PAIRS):
        problems.append(f"expected 50 distinct pairs, found {len(set(PAIRS))} of {len(PAIRS)}")
    for unix, aws in PAIRS:
        fires, problem = check_pair(unix, aws)
        if problem is not None:
            problems.append(f"mismatch for {unix!r} / {aws!r}: {problem}")
        else:
            cases.append(Case(unix, aws, fires))
    return cases, problems


def time_ours(case: Case) -> float:
    began = time.perf_counter()
    next_fire_times(case.aws, timezone="UTC", after=START, count=FIRES)
    return time.perf_counter() - began


def time_croniter(case: Case) -> float:
    began = time.perf_counter()
    walker = croniter(case.unix, START.replace(tzinfo=None))
    for _ in range(case.fires):
        walker.get_next(datetime)
    return time.perf_counter() - began


def measure(cases: list[Case], rounds: int) -> dict[Case, Timings]:
    results = {case: Timings([], []) for case in cases}
    for round_index in range(rounds):
        gc.collect()
        gc.disable()
        try:
            for position, case in enumerate(cases):
                timing = results[case]
                if (round_index + position) % 2 == 0:
                    timing.ours.append(time_ours(case))
                    timing.croniter.append(time_croniter(case))
                else:
                    timing.croniter.append(time_croniter(case))
                    timing.ours.append(time_ours(case))
        finally:
            gc.enable()
    return results


def round_totals(results: dict[Case, Timings], rounds: int) -> tuple[list[float], list[float]]:
    ours = [sum(t.ours[r] for t in results.values()) for r in range(rounds)]
    theirs = [sum(t.croniter[r] for t in results.values()) for r in range(rounds)]
    return ours, theirs


def report(cases: list[Case], results: dict[Case, Timings], rounds: int) -> None:
    ours, theirs = round_totals(results, rounds)
    total_fires = sum(case.fires for case in cases)
    best_ours, best_theirs = min(ours), min(theirs)
    median_ours, median_theirs = statistics.median(ours), statistics.median(theirs)
    print(
        f"{len(cases)} expressions, up to {FIRES} fires each ({total_fires} in all), "
        f"from {START.isoformat()}, {rounds} rounds"
    )
    capped = [case for case in cases if case.fires < FIRES]
    for case in capped:
        print(f"  {case.aws}: {case.fires} fires before the end of {AWS_LAST_YEAR}")
    print(
        f"timebridge: best {best_ours * 1e3:8.1f} ms, median {median_ours * 1e3:8.1f} ms "
        f"({best_ours / total_fires * 1e6:.2f} us per fire)"
    )
    print(
        f"croniter:   best {best_theirs * 1e3:8.1f} ms, median {median_theirs * 1e3:8.1f} ms "
        f"({best_theirs / total_fires * 1e6:.2f} us per fire)"
    )
    print(
        f"speedup vs croniter: {best_theirs / best_ours:.2f}x (best rounds), "
        f"{median_theirs / median_ours:.2f}x (median rounds)"
    )
    slowest = sorted(cases, key=lambda case: min(results[case].ours), reverse=True)
    print(f"slowest {SLOWEST_SHOWN} for timebridge (best round):")
    for case in slowest[:SLOWEST_SHOWN]:
        mine = min(results[case].ours)
        other = min(results[case].croniter)
        print(
            f"  {case.aws:34} {mine * 1e3:7.2f} ms   croniter {other * 1e3:7.2f} ms "
            f"({other / mine:.2f}x)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Next 1,000 fire times of 50 cron schedules: Timebridge vs croniter (UTC)."
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed rounds over all pairs (default 5)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print only {"speedup_vs_croniter": <croniter time / our time>}',
    )
    args = parser.parse_args()
    rounds: int = args.rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")

    cases, problems = check_all()
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1

    results = measure(cases, rounds)
    ours, theirs = round_totals(results, rounds)
    if args.json:
        print(json.dumps({"speedup_vs_croniter": round(min(theirs) / min(ours), 2)}))
    else:
        report(cases, results, rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
