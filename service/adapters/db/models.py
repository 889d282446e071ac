"""SQLAlchemy 2 models. Alembic migrations (migrations/) are the only way a schema is made; a test
checks that these models and the migrated schema agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.adapters import secrets
from service.domain.tasks import secret_header_names

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps no offset: store naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EncryptedTarget(TypeDecorator[dict[str, Any]]):
    """A task's target as JSON, with secret header values sealed at rest (see
    service.adapters.secrets); the application only ever sees plaintext."""

    impl = JsonType
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if not isinstance(value, dict) or not value.get("headers"):
            return value
        secret = secret_header_names(value)
        headers = {
            name: (
                secrets.current().seal(text)
                if name.lower() in secret and isinstance(text, str) and not secrets.is_sealed(text)
                else text
            )
            for name, text in value["headers"].items()
        }
        return {**value, "headers": headers}

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if not isinstance(value, dict) or not value.get("headers"):
            return value
        headers = {
            name: (
                secrets.current().open(text)
                if isinstance(text, str) and secrets.is_sealed(text)
                else text
            )
            for name, text in value["headers"].items()
        }
        return {**value, "headers": headers}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    system_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_tasks_status_updated", "status", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(default=True)  # desired state: paused tasks are False
    version: Mapped[int] = mapped_column(Integer, default=1)
    schedule: Mapped[dict[str, Any]] = mapped_column(JsonType)
    kind: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(8))
    timezone: Mapped[str] = mapped_column(String(64))
    aws_expression: Mapped[str | None] = mapped_column(String(256), nullable=True)
    expression_timezone: Mapped[str] = mapped_column(String(64))
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    flexible_window_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target: Mapped[dict[str, Any]] = mapped_column(EncryptedTarget())
    retry: Mapped[dict[str, Any]] = mapped_column(JsonType)
    callback: Mapped[dict[str, Any]] = mapped_column(JsonType)
    task_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType)
    schedule_name: Mapped[str] = mapped_column(String(64), unique=True)
    schedule_arn: Mapped[str | None] = mapped_column(String(512), nullable=True)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # --- Added by 0004 (issue 9 part A: triggers, chains, dependencies) ---
    # Tasks this one waits on: each occurrence runs only if their latest ended executions
    # succeeded (else it is recorded as skipped, DEPENDENCY_FAILED).
    depends_on: Mapped[list[str] | None] = mapped_column(
        JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql"),
        nullable=True,  # SQL NULL when there are none: the hooks select `IS NOT NULL`
    )
    # "DEPENDENCY_FAILED" while a dependency's latest execution did not succeed: carried in the
    # schedule's Input so the proxy skips the call without reading the database.
    dependency_gate: Mapped[str | None] = mapped_column(String(32), nullable=True)
    trigger_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # --- end of 0004 ---
    # --- Added by 0005 (issue 9 part B, execution control) -----------------------------------
    overlap: Mapped[str] = mapped_column(String(16), default="allow")  # allow|skip|buffer_one
    max_concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    window: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    outside_window: Mapped[str] = mapped_column(String(8), default="skip")  # skip|defer
    # Set while the recorder holds the schedule DISABLED because the task is at its limit
    # (callback-mode executions still running); the task's status stays `scheduled`.
    held_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # --- end of 0005 -------------------------------------------------------------------------


class Execution(Base):
    """One attempt of one occurrence; (task, scheduled time, attempt) is the occurrence key."""

    __tablename__ = "executions"
    __table_args__ = (
        UniqueConstraint("task_id", "scheduled_time", "attempt"),
        Index("ix_executions_tenant_status", "tenant_id", "status", "created_at"),
        Index("ix_executions_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_executions_status_deadline", "status", "callback_deadline"),
        Index("ix_executions_followups", "followups_pending"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    scheduled_time: Mapped[datetime] = mapped_column(UTCDateTime())
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Added by 0002 (firing path).
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")  # schedule|retry|manual
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    late_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    error_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_body_truncated: Mapped[bool] = mapped_column(default=False)
    schedule_arn: Mapped[str | None] = mapped_column(String(512), nullable=True)
    delivery_attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    callback_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    outcome_recorded: Mapped[bool] = mapped_column(default=False)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Decided but not yet carried out: a retry schedule, the next chained occurrence, the
    # task's completion. Set in the transaction that decides; cleared once done, so a
    # redelivered record (or the sweeper) finishes what a crash interrupted.
    followups_pending: Mapped[bool] = mapped_column(default=False)
    # --- Added by 0004 (issue 9 part A) ---
    # Set on executions started by an event or a chain: `evt:<source execution id>:<task id>`
    # (or `api:<event id>:<task id>`), unique, so a redelivered outcome triggers nothing twice.
    trigger_key: Mapped[str | None] = mapped_column(
        String(120), nullable=True, index=True, unique=True
    )
    # The event it runs for ({"topic", "payload"}) and how many hops from a first trigger.
    trigger_event: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    trigger_depth: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The execution whose end (or event target) started this run: the recorder fires the runs
    # an execution started after its commit, found by this index.
    source_execution_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    # --- end of 0004 ---


class Alert(Base):
    """Something an operator should look at: a late start, a final failure, a missed run."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    execution_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))  # late | final_failure | missed
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JsonType)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdempotencyRecord(Base):
    """`Idempotency-Key` on create: the same key and body give the same task."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LocalSchedule(Base):
    """The local backend's schedules: what EventBridge would hold, kept in the database."""

    __tablename__ = "local_schedules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    arn: Mapped[str] = mapped_column(String(512))
    expression: Mapped[str] = mapped_column(String(256))
    expression_timezone: Mapped[str] = mapped_column(String(64))
    input: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    flexible_window_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    delete_after_completion: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str] = mapped_column(String(512), default="")
    client_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Added by 0002 (the local engine's timer): the next instant this schedule fires, None when
    # it never will again; the engine claims due rows by it.
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Added by 0005 (issue 9): the task's priority, read from the Input; same-instant
    # occurrences are claimed higher first.
    priority: Mapped[int] = mapped_column(Integer, default=0)


class LocalFiring(Base):
    """The local engine's outbox: one row per occurrence it has taken off a schedule and not yet
    delivered. Written in the same transaction that moves the schedule to its next fire time,
    deleted after delivery, so a crash between the two redelivers (same occurrence key) rather
    than losing the occurrence. A lease keeps two engines from delivering one row at once."""

    __tablename__ = "local_firings"
    __table_args__ = (UniqueConstraint("schedule_name", "scheduled_time"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the execution-id attribute
    schedule_name: Mapped[str] = mapped_column(String(64))
    schedule_arn: Mapped[str] = mapped_column(String(512))
    scheduled_time: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)  # + flexible window
    input: Mapped[str] = mapped_column(Text)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    priority: Mapped[int] = mapped_column(Integer, default=0)  # added by 0005 (issue 9)


class AuditEvent(Base):
    """Who changed what, when: task changes, runs, retries, tenants and keys."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    actor: Mapped[str] = mapped_column(String(128))  # "key:<id>" or "jwt:<subject>"
    action: Mapped[str] = mapped_column(String(32))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(36))
    details: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
