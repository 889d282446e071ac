"""Execution control (issue 9 part B): overlap policy, concurrency limit, priority, execution
window and the recorder's hold on tasks; priority on the local engine's schedules and outbox.

Revision ID: 0005
Revises: 0003 (part A's 0004 is written in parallel; re-chained on top of it at merge)
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("overlap", sa.String(length=16), nullable=False, server_default="allow")
        )
        batch.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("window", JSON, nullable=True))
        batch.add_column(
            sa.Column("outside_window", sa.String(length=8), nullable=False, server_default="skip")
        )
        batch.add_column(sa.Column("held_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("local_schedules") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("local_firings") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("local_firings") as batch:
        batch.drop_column("priority")
    with op.batch_alter_table("local_schedules") as batch:
        batch.drop_column("priority")
    with op.batch_alter_table("tasks") as batch:
        for column in (
            "held_since",
            "outside_window",
            "window",
            "priority",
            "max_concurrency",
            "overlap",
        ):
            batch.drop_column(column)
