"""The one engine and session factory, and schema upgrades through Alembic."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Insert, Table, create_engine, event, inspect
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.engine.interfaces import BindTyping
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


def insert_rows(session: Session | Connection, rows: Sequence[Any]) -> None:
    """INSERT new rows of one mapped class, in the session's (or connection's) transaction, one
    statement per set of filled-in columns (one for rows built alike).

    For rows that are only written (never changed through the session) this skips the unit of
    work, which costs more than the INSERT itself on a hot path. The rows stay transient: do not
    add them to a session afterwards. Unset attributes get their column's default, as in a flush.
    A single row goes to the driver as a statement compiled once (see `_insert_one`).
    """
    if not rows:
        return
    statement, columns = _insert_columns(type(rows[0]))
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        state = row.__dict__
        values = {column: state[attr] for attr, column in columns if attr in state}
        groups.setdefault(tuple(values), []).append(values)
    connection = session.connection() if isinstance(session, Session) else session
    for keys, values_list in groups.items():
        if len(values_list) == 1:
            _insert_one(connection, type(rows[0]), keys, values_list[0])
        else:
            connection.execute(statement, values_list)


def insert_values(session: Session | Connection, cls: type[Any], values: Mapping[str, Any]) -> None:
    """INSERT one row of mapped class `cls` from its attribute values, as `insert_rows` would
    write the same row built as an object (unset columns get their defaults), without building
    one: for rows only ever written on a hot path."""
    _statement, columns = _insert_columns(cls)
    row = {column: values[attr] for attr, column in columns if attr in values}
    if len(row) != len(values):
        unknown = sorted(set(values) - {attr for attr, _ in columns})
        raise TypeError(f"{cls.__name__} has no column attribute {unknown[0]!r}")
    connection = session.connection() if isinstance(session, Session) else session
    _insert_one(connection, cls, tuple(row), row)


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


@dataclass(frozen=True)
class _Prepared:
    """One INSERT as the driver takes it: its SQL, and how to turn column values into its
    parameters (SQLAlchemy's own bind processors and scalar column defaults)."""

    sql: str
    names: tuple[str, ...]  # the parameters, in the statement's order
    positional: bool
    processors: tuple[Callable[[Any], Any] | None, ...]
    defaults: tuple[tuple[str, Any], ...]  # (column, value) for unset columns with a default


_prepared: dict[tuple[type[Any], tuple[str, ...], str], _Prepared | None] = {}


def _prepare(cls: type[Any], keys: tuple[str, ...], dialect: Dialect) -> _Prepared | None:
    """The INSERT of `cls` for the columns `keys`, compiled for `dialect` as a Core execute
    would compile it; None where the driver needs more than a plain execute (typed inputs,
    escaped names, a default computed per row): Core then runs it."""
    statement, _columns = _insert_columns(cls)
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if (
        dialect.bind_typing is BindTyping.SETINPUTSIZES
        or compiled.escaped_bind_names
        or compiled.postfetch
        or compiled.returning
    ):
        return None
    defaults: list[tuple[str, Any]] = []
    for column in compiled.insert_prefetch:
        default = column.default
        if default is None or not getattr(default, "is_scalar", False):
            return None
        defaults.append((column.key, getattr(default, "arg", None)))
    positional = bool(compiled.positional)
    names = tuple(compiled.positiontup or ()) if positional else tuple(compiled.binds)
    if set(names) != set(keys) | {key for key, _ in defaults}:
        return None
    processors: list[Callable[[Any], Any] | None] = []
    for name in names:
        process = compiled._bind_processors.get(name)
        if process is not None and not callable(process):
            return None  # per-element processors of a tuple type
        processors.append(process)
    return _Prepared(
        sql=compiled.string,
        names=names,
        positional=positional,
        processors=tuple(processors),
        defaults=tuple(defaults),
    )


def _insert_one(
    connection: Connection, cls: type[Any], keys: tuple[str, ...], values: dict[str, Any]
) -> None:
    """One row through the driver's cursor with a statement compiled once per column set:
    what Core's execute would send, without its per-call machinery (cache key, execution
    context, result), which costs more than SQLite's own insert. A driver error is handed to
    SQLAlchemy's own handling: the same exception types (IntegrityError, ...), and a lost
    connection is invalidated as with any execute. Engine events and echo are not run for it."""
    dialect = connection.dialect
    cache_key = (cls, keys, dialect.name)
    if cache_key in _prepared:
        prepared = _prepared[cache_key]
    else:
        prepared = _prepared[cache_key] = _prepare(cls, keys, dialect)
    if prepared is None:
        statement, _columns = _insert_columns(cls)
        connection.execute(statement, [values])
        return
    for column, value in prepared.defaults:
        values[column] = value
    processed = [
        value if process is None else process(value)
        for value, process in zip(
            [values[name] for name in prepared.names], prepared.processors, strict=True
        )
    ]
    parameters: Any = (
        tuple(processed)
        if prepared.positional
        else dict(zip(prepared.names, processed, strict=True))
    )
    cursor = connection.connection.cursor()
    try:
        cursor.execute(prepared.sql, parameters)
    except Exception as exc:  # SQLAlchemy's handling re-raises it, wrapped
        connection._handle_dbapi_exception(exc, prepared.sql, parameters, cursor, None)
    finally:
        cursor.close()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` with Alembic (the only way a schema is made)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
