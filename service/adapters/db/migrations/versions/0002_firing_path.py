"""Firing path: execution outcome columns, alerts, the local engine's fire times and outbox.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(
            sa.Column("trigger", sa.String(length=16), nullable=False, server_default="schedule")
        )
        batch.add_column(sa.Column("planned_at", UTC_TIME, nullable=True))
        batch.add_column(sa.Column("late_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("error_kind", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("response_headers", JSON, nullable=True))
        batch.add_column(sa.Column("response_body", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "response_body_truncated", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(sa.Column("schedule_arn", sa.String(length=512), nullable=True))
        batch.add_column(sa.Column("delivery_attempt", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("callback_deadline", UTC_TIME, nullable=True))
        batch.add_column(
            sa.Column("outcome_recorded", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("retry_at", UTC_TIME, nullable=True))
        batch.add_column(
            sa.Column("followups_pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_index(
            "ix_executions_tenant_created", ["tenant_id", "created_at", "id"], unique=False
        )
        batch.create_index(
            "ix_executions_status_deadline", ["status", "callback_deadline"], unique=False
        )
        batch.create_index("ix_executions_followups", ["followups_pending"], unique=False)
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("execution_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alerts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_alerts_dedupe_key")),
    )
    op.create_index(
        "ix_alerts_tenant_created", "alerts", ["tenant_id", "created_at", "id"], unique=False
    )
    op.create_table(
        "local_firings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("schedule_name", sa.String(length=64), nullable=False),
        sa.Column("schedule_arn", sa.String(length=512), nullable=False),
        sa.Column("scheduled_time", UTC_TIME, nullable=False),
        sa.Column("due_at", UTC_TIME, nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("lease_until", UTC_TIME, nullable=True),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_firings")),
        sa.UniqueConstraint(
            "schedule_name",
            "scheduled_time",
            name=op.f("uq_local_firings_schedule_name_scheduled_time"),
        ),
    )
    op.create_index(op.f("ix_local_firings_due_at"), "local_firings", ["due_at"], unique=False)
    with op.batch_alter_table("local_schedules") as batch:
        batch.add_column(sa.Column("next_fire_at", UTC_TIME, nullable=True))
        batch.add_column(sa.Column("last_fired_at", UTC_TIME, nullable=True))
        batch.create_index(op.f("ix_local_schedules_next_fire_at"), ["next_fire_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("local_schedules") as batch:
        batch.drop_index(op.f("ix_local_schedules_next_fire_at"))
        batch.drop_column("last_fired_at")
        batch.drop_column("next_fire_at")
    op.drop_index(op.f("ix_local_firings_due_at"), table_name="local_firings")
    op.drop_table("local_firings")
    op.drop_index("ix_alerts_tenant_created", table_name="alerts")
    op.drop_table("alerts")
    with op.batch_alter_table("executions") as batch:
        batch.drop_index("ix_executions_followups")
        batch.drop_index("ix_executions_status_deadline")
        batch.drop_index("ix_executions_tenant_created")
        for column in (
            "followups_pending",
            "retry_at",
            "outcome_recorded",
            "callback_deadline",
            "delivery_attempt",
            "schedule_arn",
            "response_body_truncated",
            "response_body",
            "response_headers",
            "error_kind",
            "late_seconds",
            "planned_at",
            "trigger",
        ):
            batch.drop_column(column)
