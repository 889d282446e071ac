"""Triggers, chains and dependencies (issue 9 part A).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("depends_on", JSON, nullable=True))
    op.add_column("tasks", sa.Column("dependency_gate", sa.String(length=32), nullable=True))
    op.add_column(
        "tasks", sa.Column("trigger_count", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "tasks", sa.Column("last_triggered_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("executions", sa.Column("trigger_key", sa.String(length=120), nullable=True))
    op.add_column("executions", sa.Column("trigger_event", JSON, nullable=True))
    op.add_column(
        "executions",
        sa.Column("trigger_depth", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "executions", sa.Column("source_execution_id", sa.String(length=36), nullable=True)
    )
    op.create_index("ix_executions_trigger_key", "executions", ["trigger_key"], unique=True)
    op.create_index(
        "ix_executions_source_execution_id", "executions", ["source_execution_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_executions_source_execution_id", table_name="executions")
    op.drop_index("ix_executions_trigger_key", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("source_execution_id")
        batch.drop_column("trigger_depth")
        batch.drop_column("trigger_event")
        batch.drop_column("trigger_key")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("last_triggered_at")
        batch.drop_column("trigger_count")
        batch.drop_column("dependency_gate")
        batch.drop_column("depends_on")
