"""`timebridge explain`: people's output, --json for scripts, exit 2 on bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from service.cli import app, spec_for

runner = CliRunner()


def test_explain_json_has_the_documented_keys() -> None:
    result = runner.invoke(app, ["explain", "0 9 * * 1-5", "--tz", "Asia/Seoul", "--json"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert set(view) == {"aws_expression", "mode", "description", "warnings", "next_fire_times"}
    assert view["aws_expression"] == "cron(0 9 ? * MON-FRI *)"
    assert view["mode"] == "native"
    assert len(view["next_fire_times"]) == 5
    assert all(fire["local"].endswith("+09:00") for fire in view["next_fire_times"])


def test_explain_count_limits_the_fires() -> None:
    result = runner.invoke(app, ["explain", "rate(5 minutes)", "--count", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["next_fire_times"]) == 3


def test_explain_prints_a_table_for_people() -> None:
    result = runner.invoke(app, ["explain", "cron(30 2 * * ? *)", "--tz", "America/New_York"])
    assert result.exit_code == 0, result.output
    assert "AWS expression  cron(30 2 * * ? *)" in result.stdout
    assert "Mode            native" in result.stdout
    assert "does not exist in America/New_York" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["explain", "cron(0 9 ? * 0 *)"], "out of range 1-7 (in AWS cron SUN is 1)"),
        (["explain", "0 9 * *"], "five"),
        (["explain", "0 9 * * 1", "--tz", "Mars/Base"], "IANA"),
        (["explain", "FREQ=SECONDLY"], "SECONDLY"),
        (["explain", "at(2026-02-30T00:00:00)"], "schedule.at"),
    ],
)
def test_invalid_input_exits_2_with_the_reason_and_no_traceback(
    args: list[str], words: str
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert words in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("at(2027-01-01T00:00:00)", "once"),
        ("rate(1 hour)", "rate"),
        ("cron(0 9 * * ? *)", "cron"),
        ("0 9 * * *", "cron"),
        ("@daily", "cron"),
        ("FREQ=DAILY;BYHOUR=9", "rrule"),
        ("DTSTART:20270101T090000\nRRULE:FREQ=DAILY", "rrule"),
    ],
)
def test_expression_kind_is_recognised(text: str, kind: str) -> None:
    assert spec_for(text, None)["kind"] == kind
