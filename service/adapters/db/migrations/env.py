"""Alembic environment: runs on the connection handed in by `session.upgrade`."""

from __future__ import annotations

from alembic import context

from service.adapters.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through session.upgrade
    raise RuntimeError("run migrations through service.adapters.db.session.upgrade")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
