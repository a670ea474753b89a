"""Alembic environment: run by backend/db.py:migrate() with a live connection."""

from __future__ import annotations

from alembic import context

from kumulus.backend.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
