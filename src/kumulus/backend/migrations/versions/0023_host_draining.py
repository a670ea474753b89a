"""hosts.draining

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 09:00:00

A provider drains a host before maintenance: the scheduler places no new VM there while
the VMs already there keep running. Existing hosts do not drain.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch mode): batch mode would rebuild the scheduler's DESC
    # indexes without their order (see 0016).
    op.add_column(
        "hosts", sa.Column("draining", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch_op:
        batch_op.drop_column("draining")
