"""Suite-wide setup. Under CI=true an unreachable PostgreSQL fails the run instead of letting
PostgreSQL-backed tests skip quietly (the server is expected at TIMEBRIDGE_TEST_POSTGRES_HOST,
default 127.0.0.1:5432)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Base
from service.adapters.db.session import make_engine, make_session_factory, upgrade


def _postgres_address() -> tuple[str, int]:
    host, _, port = os.environ.get("TIMEBRIDGE_TEST_POSTGRES_HOST", "127.0.0.1:5432").partition(":")
    return host, int(port or 5432)


def postgres_reachable(timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(_postgres_address(), timeout=timeout):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI", "").lower() == "true" and not postgres_reachable():
        host, port = _postgres_address()
        pytest.exit(f"CI=true but PostgreSQL is unreachable at {host}:{port}", returncode=1)


POSTGRES_URL = os.environ.get(
    "TIMEBRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_engine(schema: str) -> Engine:
    base = make_engine(POSTGRES_URL)
    with base.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    base.dispose()
    return create_engine(
        POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"}, pool_pre_ping=True
    )


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def migrated_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One migrated database per kind for the whole run; tests empty it with `db_sessions`."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "timebridge.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        yield engine
        engine.dispose()
        return
    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (under CI this fails the run)")
    schema = f"tb_test_{uuid.uuid4().hex[:12]}"
    engine = _pg_engine(schema)
    upgrade(engine)
    yield engine
    engine.dispose()
    cleanup = make_engine(POSTGRES_URL)
    with cleanup.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    cleanup.dispose()


@pytest.fixture
def db_sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    """A session factory on an emptied database (SQLite file or PostgreSQL schema)."""
    with migrated_engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    return make_session_factory(migrated_engine)
