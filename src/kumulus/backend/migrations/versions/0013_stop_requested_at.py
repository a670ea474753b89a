"""vms.stop_requested_at: when the stop its host has not carried out was asked for

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 02:30:00

A host that keeps a VM running long after its stop fails the lease (reputation); the time
the stop was asked for says how long.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch_op:
        batch_op.add_column(
            sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch_op:
        batch_op.drop_column("stop_requested_at")
