"""Suite-wide setup: a migrated SQLite and PostgreSQL database for the tests that use one.

PostgreSQL is `TIMEBRIDGE_TEST_POSTGRES_URL` (default: user postgres, database test on
127.0.0.1:5432). Where it does not answer, its tests are skipped, except under CI=true, where
the whole run fails at once instead.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters import secrets
from service.adapters.db.models import Base
from service.adapters.db.session import (
    MAX_OVERFLOW,
    POOL_SIZE,
    make_engine,
    make_session_factory,
    upgrade,
)

# Header secrets are sealed at rest; the suite uses one fixed key (tests that need another set it).
TEST_SECRETS_KEY = "dGltZWJyaWRnZS10ZXN0cy1zZWNyZXRzLWtleS0zMmI="  # base64 of 32 bytes
secrets.configure(secrets.LocalCipher.from_text(TEST_SECRETS_KEY))


@pytest.fixture(autouse=True)
def _test_secrets_key() -> None:
    """Apps started by a test configure a key of their own; each test starts from the suite's."""
    secrets.configure(secrets.LocalCipher.from_text(TEST_SECRETS_KEY))


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region for moto; no endpoint, so boto3 stays in-process."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


POSTGRES_URL = os.environ.get(
    "TIMEBRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@functools.cache
def postgres_reachable() -> bool:
    """True when the test PostgreSQL accepts a connection and answers a query."""
    probe = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with probe.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return True
    except SQLAlchemyError:
        return False
    finally:
        probe.dispose()


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI", "").lower() == "true" and not postgres_reachable():
        where = POSTGRES_URL.rsplit("@", 1)[-1]
        pytest.exit(f"CI=true but PostgreSQL does not answer at {where}", returncode=1)


def _pg_engine(schema: str) -> Engine:
    base = make_engine(POSTGRES_URL)
    with base.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    base.dispose()
    return create_engine(
        POSTGRES_URL,
        connect_args={"options": f"-csearch_path={schema}"},
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
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
        pytest.skip(reason="PostgreSQL does not answer (under CI=true this fails the run)")
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
