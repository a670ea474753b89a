"""rate_counters; api_tokens.from_login

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 10:00:00

Fixed-window counters of the rate limits every backend process shares (per-account login
failures and sign-ups, backend/rate_counters.py), and which API tokens a log-in issued (a
log-in past `max_sessions` revokes the least recently used of those; tokens made before are
counted as made on purpose).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_rate_counters_expires_at"), "rate_counters", ["expires_at"])
    # Plain ADD COLUMN (no batch rebuild of the table on SQLite).
    op.add_column(
        "api_tokens",
        sa.Column("from_login", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_column("from_login")
    op.drop_index(op.f("ix_rate_counters_expires_at"), table_name="rate_counters")
    op.drop_table("rate_counters")
