"""The deploy-time migration hook: a URL from an RDS secret, the schema upgraded on Create and
Update, nothing dropped on Delete."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from infra.functions.migrate import PHYSICAL_ID, database_url_from_environment, handle
from infra.functions.migrate import database_url_from_secret as url_from


def test_secret_fields_become_a_quoted_postgresql_url() -> None:
    url = url_from(
        {
            "username": "tb",
            "password": "p@ss:w/rd%",
            "host": "db.internal",
            "port": 5433,
            "dbname": "timebridge",
            "engine": "postgres",
        }
    )
    assert url == "postgresql://tb:p%40ss%3Aw%2Frd%25@db.internal:5433/timebridge"
    assert url_from({"username": "u", "password": "p", "host": "h"}).endswith("h:5432/postgres")


def test_a_secret_without_a_password_is_refused() -> None:
    with pytest.raises(ValueError, match="password"):
        url_from({"username": "u", "host": "h"})


def test_database_url_setting_wins_over_the_secret() -> None:
    env = {"TIMEBRIDGE_DATABASE_URL": "sqlite:///x.db", "TIMEBRIDGE_DATABASE_SECRET_ARN": "arn"}
    assert database_url_from_environment(env) == "sqlite:///x.db"
    with pytest.raises(RuntimeError):
        database_url_from_environment({})


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_bring_the_schema_to_head(tmp_path: Path, request_type: str) -> None:
    url = f"sqlite:///{tmp_path}/schema.db"
    answer = handle({"RequestType": request_type}, resolve_url=lambda: url)
    assert answer["PhysicalResourceId"] == PHYSICAL_ID
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"alembic_version", "tasks", "api_keys"} <= tables


def test_delete_touches_nothing() -> None:
    def refuse() -> str:
        raise AssertionError("Delete must not reach the database")

    assert (
        handle({"RequestType": "Delete"}, resolve_url=refuse)["PhysicalResourceId"] == PHYSICAL_ID
    )
    with pytest.raises(ValueError):
        handle({"RequestType": "Rename"}, resolve_url=refuse)
