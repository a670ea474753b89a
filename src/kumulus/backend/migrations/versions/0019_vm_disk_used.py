"""vms: disk_used, disk_used_at

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 06:00:00

Bytes each VM has used of its disk quota, as its host last reported it (signed heartbeats
and answers), and when: `df` inside a VM shows the host's filesystem, never the quota.
Null until a host reports it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild): nullable columns, nothing to copy.
    op.add_column("vms", sa.Column("disk_used", sa.BigInteger(), nullable=True))
    op.add_column("vms", sa.Column("disk_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch_op:
        batch_op.drop_column("disk_used_at")
        batch_op.drop_column("disk_used")
