"""vms.actual_state takes "insufficient_funds" (18 characters)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 23:20:00

The meter job marks the VMs of broke developers `insufficient_funds`; on PostgreSQL that
did not fit VARCHAR(16), so the marking failed and took the whole enforcement run with it.
(SQLite does not enforce the length; its table is rebuilt so the schema says the same.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _resize(old: int, new: int) -> None:
    with op.batch_alter_table("vms", schema=None) as batch_op:
        batch_op.alter_column(
            "actual_state", type_=sa.String(length=new), existing_type=sa.String(length=old),
            existing_nullable=False,
        )  # fmt: skip


def upgrade() -> None:
    _resize(16, 32)


def downgrade() -> None:
    _resize(32, 16)
