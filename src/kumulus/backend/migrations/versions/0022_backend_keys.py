"""backend_keys: the public addresses of the platform's keys

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 09:00:00

Several backend replicas share one database and must sign with the same keys (agents pin
the backend's address; payouts, anchors and deposits are the platform's addresses on
chain). The first process to use a key records its address here; a replica holding
another key refuses to start (backend/backend_keys.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backend_keys",
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("role"),
    )


def downgrade() -> None:
    op.drop_table("backend_keys")
