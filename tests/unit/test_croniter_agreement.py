"""Differential test: random unix cron expressions, translated to AWS cron (or run chained), must
fire exactly when croniter says, for the next 10 fires in UTC."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter

from service.domain.schedules import compile_schedule, next_fire_times
from service.domain.schedules.unix_cron import parse_unix_cron

CASES = 2400
SEED = 20261123
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def field(rng: random.Random, low: int, high: int, names: list[str] | None = None) -> str:
    """One unix field: *, a value, a list, a range, a step, or names."""

    def value(v: int) -> str:
        if names and rng.random() < 0.3:
            name = names[v - low] if v - low < len(names) else str(v)
            return name.lower() if rng.random() < 0.3 else name
        return str(v)

    shape = rng.choice(["star", "value", "list", "range", "star_step", "range_step", "start_step"])
    if shape == "star":
        return "*"
    if shape == "value":
        return value(rng.randint(low, high))
    if shape == "list":
        picks = sorted(rng.sample(range(low, high + 1), rng.randint(2, min(4, high - low + 1))))
        return ",".join(value(v) for v in picks)
    # Ranges have distinct ends: croniter reads a range like 5-5 or DEC-DEC as the whole
    # field, where cron (and Timebridge, see the test below) means the single value.
    a = rng.randint(low, high - 1)
    b = rng.randint(a + 1, high)
    if shape == "range":
        return f"{value(a)}-{value(b)}"
    step = rng.randint(1, max(1, (high - low) // 2))
    if shape == "star_step":
        return f"*/{step}"
    if shape == "range_step":
        return f"{a}-{b}/{step}"
    return f"{a}/{step}"


def expression(rng: random.Random) -> str:
    if rng.random() < 0.03:
        return rng.choice(["@hourly", "@daily", "@weekly", "@monthly", "@yearly"])
    # Day fields are often '*' in real crontabs; that is also what translates to AWS natively.
    dom = "*" if rng.random() < 0.4 else field(rng, 1, 31)
    dow = "*" if rng.random() < 0.4 else field(rng, 0, 6, DAYS)
    if rng.random() < 0.1:
        dow = rng.choice(["7", "0,7", "5-7", "SUN"])
    return " ".join([field(rng, 0, 59), field(rng, 0, 23), dom, field(rng, 1, 12, MONTHS), dow])


def croniter_quirk(text: str) -> bool:
    """A day field that covers every day without being '*' (e.g. */1 or 0-6): croniter then
    ORs or ANDs the two day fields depending on whether the OTHER field's text contains a '*',
    where POSIX (and Timebridge, see the test below) always ORs."""
    if text.startswith("@"):
        return False
    parsed = parse_unix_cron(text)
    _, _, dom, _, dow = text.split()
    return (len(parsed.days_of_month) == 31 and dom != "*") or (
        len(parsed.weekdays) == 7 and dow != "*"
    )


def croniter_fires(text: str, after: datetime, count: int) -> list[datetime]:
    walker = croniter(text, after.replace(tzinfo=None))
    return [walker.get_next(datetime).replace(tzinfo=UTC) for _ in range(count)]


def test_random_unix_expressions_agree_with_croniter() -> None:
    rng = random.Random(SEED)
    native = chained = skipped = 0
    for case in range(CASES):
        text = expression(rng)
        while croniter_quirk(text):
            skipped += 1
            text = expression(rng)
        after = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 525_600 * 3))
        aws = parse_unix_cron(text).to_aws()
        if aws is not None:
            native += 1
            ours = next_fire_times(aws, after=after, count=10)
        else:
            chained += 1
            compiled = compile_schedule({"kind": "cron", "expression": text}, now=after)
            assert compiled.mode == "chained"
            ours = compiled.next_fire_times(after, 10)
        expected = croniter_fires(text, after, 10)
        assert ours == expected, f"case {case}: {text!r} -> {aws!r} after {after}"
    tally = (
        f"{CASES} expressions, {native} native, {chained} chained, 0 disagree "
        f"({skipped} with a day field that covers every day but is not '*' drawn again)"
    )
    print(f"\nunix cron vs croniter: {tally}")
    assert native > 500 and chained > 100


def test_a_range_with_equal_ends_is_that_one_value() -> None:
    assert parse_unix_cron("5-5 * * * *").to_aws() == "cron(5 * * * ? *)"
    assert parse_unix_cron("0 0 1 DEC-DEC *").to_aws() == "cron(0 0 1 12 ? *)"


def test_a_day_field_covering_every_day_still_restricts_as_posix_says() -> None:
    # '0-6' is "an element or list" in POSIX terms: with the 1st and 6th it means either.
    for text in ("0 0 1,6 * 0-6", "0 0 1,6 * */1", "0 0 1,6 * SUN-SAT"):
        unix = parse_unix_cron(text)
        assert unix.days_either and unix.to_aws() == "cron(0 0 * * ? *)", text
    assert parse_unix_cron("0 0 1-31 * MON").to_aws() == "cron(0 0 * * ? *)"
    assert parse_unix_cron("0 0 1,6 * *").to_aws() == "cron(0 0 1,6 * ? *)"


@pytest.mark.parametrize(
    ("unix", "aws"),
    [
        ("* * * * *", "cron(* * * * ? *)"),
        ("0 9 * * *", "cron(0 9 * * ? *)"),
        ("0 9 * * 1-5", "cron(0 9 ? * MON-FRI *)"),
        ("0 9 * * MON-FRI", "cron(0 9 ? * MON-FRI *)"),
        ("0 9 * * mon,wed,fri", "cron(0 9 ? * MON,WED,FRI *)"),
        ("0 0 * * 0", "cron(0 0 ? * SUN *)"),
        ("0 0 * * 7", "cron(0 0 ? * SUN *)"),
        ("0 0 * * 5-7", "cron(0 0 ? * SUN,FRI,SAT *)"),
        ("0 0 * * */2", "cron(0 0 ? * SUN,TUE,THU,SAT *)"),
        ("0 0 * * 1/3", "cron(0 0 ? * MON,THU *)"),
        ("*/15 * * * *", "cron(0/15 * * * ? *)"),
        ("5/15 * * * *", "cron(5/15 * * * ? *)"),
        ("10-40/10 * * * *", "cron(10,20,30,40 * * * ? *)"),
        ("0 */6 * * *", "cron(0 0/6 * * ? *)"),
        ("0 8-18 * * *", "cron(0 8-18 * * ? *)"),
        ("0 1,2,3,10 * * *", "cron(0 1-3,10 * * ? *)"),
        ("0 0 1,15 * *", "cron(0 0 1,15 * ? *)"),
        ("0 0 */2 * *", "cron(0 0 1/2 * ? *)"),
        ("0 0 1 JAN,jul *", "cron(0 0 1 1,7 ? *)"),
        ("0 0 1 */3 *", "cron(0 0 1 1/3 ? *)"),
        ("0 0 1 6-8 *", "cron(0 0 1 6-8 ? *)"),
        ("@hourly", "cron(0 * * * ? *)"),
        ("@daily", "cron(0 0 * * ? *)"),
        ("@midnight", "cron(0 0 * * ? *)"),
        ("@weekly", "cron(0 0 ? * SUN *)"),
        ("@monthly", "cron(0 0 1 * ? *)"),
        ("@yearly", "cron(0 0 1 1 ? *)"),
        ("@annually", "cron(0 0 1 1 ? *)"),
        ("0 9 1 * 1", None),  # the 1st OR a Monday: no AWS equivalent, chained
        ("0 9 */2 * 1-5", None),
    ],
)
def test_unix_features_translate_to_the_same_aws_schedule(unix: str, aws: str | None) -> None:
    assert parse_unix_cron(unix).to_aws() == aws
