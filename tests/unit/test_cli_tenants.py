"""`timebridge tenants` and `timebridge keys` (issue "Tenants, roles and security hardening":
the same operations in the CLI), against a SQLite file named by the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app


def test_tenants_and_keys_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMEBRIDGE_DATABASE_URL", f"sqlite:///{tmp_path}/tb.db")
    runner = CliRunner()
    made = runner.invoke(app, ["tenants", "create", "ops", "--json"])
    assert made.exit_code == 0, made.output
    tenant = json.loads(made.output)
    key = json.loads(
        runner.invoke(
            app, ["keys", "create", "--tenant", tenant["id"], "--role", "viewer", "--json"]
        ).output
    )
    assert key["key"].startswith("tb_") and key["role"] == "viewer"
    listed = runner.invoke(app, ["keys", "list", "--tenant", tenant["id"]])
    assert key["id"] in listed.output and "active" in listed.output
    assert runner.invoke(app, ["keys", "revoke", key["id"]]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["keys", "list", "--tenant", tenant["id"]]).output
    duplicate = runner.invoke(app, ["tenants", "create", "ops"])
    assert duplicate.exit_code == 1 and "exists" in duplicate.output
    bad_role = runner.invoke(app, ["keys", "create", "--tenant", tenant["id"], "--role", "god"])
    assert bad_role.exit_code == 2
    assert "ops" in runner.invoke(app, ["tenants", "list"]).output
