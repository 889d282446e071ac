"""The one engine and session factory, and schema upgrades through Alembic."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Insert, Table, create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapper, Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
# The local engine's workers each hold a session while the local backend opens another (two
# connections a delivery), beside the API's own: room for the default 32 workers and more.
POOL_SIZE = 10
MAX_OVERFLOW = 90


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets foreign keys, WAL and a busy timeout, and its folder."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1] if "///" in url else ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: no fsync per commit; a power cut may lose the last commits, never
            # corrupt the file. Right for a laptop database; production runs on PostgreSQL.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW)


def database_url_from_secret(secret: Mapping[str, Any]) -> str:
    """A `postgresql://` URL from an RDS-style secret; ValueError names a missing field."""
    missing = [field for field in ("username", "password", "host") if not secret.get(field)]
    if missing:
        raise ValueError(f"the database secret lacks {', '.join(missing)}")
    user = quote(str(secret["username"]), safe="")
    password = quote(str(secret["password"]), safe="")
    port = int(secret.get("port") or 5432)
    dbname = quote(str(secret.get("dbname") or "postgres"), safe="")
    return f"postgresql://{user}:{password}@{secret['host']}:{port}/{dbname}"


def fetch_database_url(secret_arn: str, *, client: Any = None) -> str:
    """The URL from a Secrets Manager secret (TIMEBRIDGE_DATABASE_SECRET_ARN on AWS)."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    response = client.get_secret_value(SecretId=secret_arn)
    return database_url_from_secret(json.loads(response["SecretString"]))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def insert_rows(session: Session, rows: Sequence[Any]) -> None:
    """INSERT new rows of one mapped class, in the session's transaction, one statement per
    set of filled-in columns (one for rows built alike).

    For rows that are only written (never changed through the session) this skips the unit of
    work, which costs more than the INSERT itself on a hot path. The rows stay transient: do not
    add them to a session afterwards. Unset attributes get their column's default, as in a flush.
    """
    if not rows:
        return
    statement, columns = _insert_columns(type(rows[0]))
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        state = row.__dict__
        values = {column: state[attr] for attr, column in columns if attr in state}
        groups.setdefault(tuple(values), []).append(values)
    connection = session.connection()
    for values_list in groups.values():
        connection.execute(statement, values_list)


_Inserts = tuple[Insert, tuple[tuple[str, str], ...]]
_inserts: dict[type[Any], _Inserts] = {}


def _insert_columns(cls: type[Any]) -> _Inserts:
    """The INSERT of a mapped class's table and its (attribute, column) names."""
    found = _inserts.get(cls)
    if found is None:
        mapper: Mapper[Any] = inspect(cls)
        table = mapper.local_table
        assert isinstance(table, Table)
        columns = tuple((attr.key, attr.columns[0].key) for attr in mapper.column_attrs)
        found = _inserts[cls] = (table.insert(), columns)
    return found


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` with Alembic (the only way a schema is made)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
