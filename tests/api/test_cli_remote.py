"""The `timebridge` commands that talk to the HTTP API, against the app in-process (issue
"Operator experience", item 1): each command, `--json` shapes, exit codes, and an import of
1,000 rows with bad ones that is safe to run twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from service.adapters.db.models import Task
from service.cli import app as cli
from service.remote import Remote
from tests.api.test_tasks_api import ADMIN_KEY, task_body


@pytest.fixture
def runner(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    api = client.app

    def in_process(base_url: str, headers: dict[str, str]) -> Any:
        return TestClient(api, base_url=base_url, headers=headers, raise_server_exceptions=False)

    monkeypatch.setattr(Remote, "client_factory", staticmethod(in_process))
    monkeypatch.setenv("TIMEBRIDGE_URL", "http://testserver")
    monkeypatch.setenv("TIMEBRIDGE_API_KEY", ADMIN_KEY)
    yield CliRunner()


def run(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(cli, list(args))


def test_task_commands_and_their_json(runner: CliRunner) -> None:
    made = run(runner, "tasks", "create", json.dumps(task_body()), "--json")
    assert made.exit_code == 0, made.output
    (task,) = json.loads(made.output)
    assert task["status"] == "scheduled" and task["target"]["headers"]["Authorization"] == "***"
    listed = json.loads(run(runner, "tasks", "list", "--json").output)
    assert [t["id"] for t in listed] == [task["id"]]
    assert task["id"] in run(runner, "tasks", "list").output
    shown = run(runner, "tasks", "show", task["id"])
    assert "cron(0 9 ? * MON-FRI *)" in shown.output
    assert (
        json.loads(run(runner, "tasks", "pause", task["id"], "--json").output)[0]["status"]
        == "paused"
    )
    assert (
        json.loads(run(runner, "tasks", "resume", task["id"], "--json").output)[0]["status"]
        == "scheduled"
    )
    (started,) = json.loads(run(runner, "tasks", "run", task["id"], "--json").output)
    assert started["trigger"] == "manual"
    executions = json.loads(run(runner, "executions", "list", "--json").output)
    assert [e["id"] for e in executions] == [started["id"]]
    assert (
        json.loads(run(runner, "executions", "show", started["id"], "--json").output)["id"]
        == started["id"]
    )
    refused = run(runner, "executions", "retry", started["id"])
    assert refused.exit_code == 1 and "CONFLICT" in refused.output  # still pending
    assert (
        json.loads(run(runner, "tasks", "cancel", task["id"], "--json").output)[0]["status"]
        == "cancelled"
    )
    exported = run(runner, "export")
    assert exported.exit_code == 0 and exported.output == ""  # cancelled tasks are not exported


def test_bad_input_and_bad_targets_exit_with_one_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(runner, "tasks", "create", "{not json").exit_code == 2
    missing = run(runner, "tasks", "show", "00000000-0000-4000-8000-000000000000")
    assert missing.exit_code == 1 and missing.output.count("\n") == 1
    assert "NOT_FOUND" in missing.output
    monkeypatch.setenv("TIMEBRIDGE_API_KEY", "tb_wrong")
    wrong_key = run(runner, "tasks", "list")
    assert wrong_key.exit_code == 1 and "UNAUTHORIZED" in wrong_key.output
    monkeypatch.setattr(
        Remote,
        "client_factory",
        staticmethod(
            lambda url, headers: __import__("httpx").Client(
                base_url=url, headers=headers, timeout=2
            )
        ),
    )
    monkeypatch.setenv("TIMEBRIDGE_URL", "http://127.0.0.1:9")
    unreachable = run(runner, "tasks", "list")
    assert unreachable.exit_code == 3 and "cannot reach" in unreachable.output
    assert "Traceback" not in unreachable.output


def test_import_of_a_thousand_rows_reports_bad_rows_and_is_safe_to_repeat(
    runner: CliRunner, tmp_path: Path, db_sessions: sessionmaker[Session]
) -> None:
    lines = []
    bad = {
        7: "{broken json",
        250: json.dumps(task_body(schedule={"kind": "cron", "expression": "61 * * * *"})),
        999: json.dumps(
            {
                "schedule": {"kind": "daily", "time": "10:00"},
                "target": {"url": "https://x.internal/"},
            }
        ),
    }
    for number in range(1, 1001):
        if number in bad:
            lines.append(bad[number])
        else:
            lines.append(json.dumps(task_body(name=f"row-{number}")))
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    first = run(runner, "import", str(path), "--json")
    assert first.exit_code == 1
    report = json.loads(first.output)
    assert (report["rows"], report["created"], report["existing"], report["failed"]) == (
        1000,
        997,
        0,
        3,
    )
    assert [e["line"] for e in report["errors"]] == [7, 250, 999]
    assert "schedule.expression" in report["errors"][1]["error"]
    again = json.loads(run(runner, "import", str(path), "--json").output)
    assert (again["created"], again["existing"], again["failed"]) == (0, 997, 3)
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 997
    csv_path = tmp_path / "tasks.csv"
    csv_path.write_text(
        'name,schedule,url\nfrom-csv,"{""kind"": ""daily"", ""time"": ""07:30""}",https://x.internal/a\n'
    )
    text = run(runner, "import", str(csv_path))
    assert text.exit_code == 0 and "1 created" in text.output
