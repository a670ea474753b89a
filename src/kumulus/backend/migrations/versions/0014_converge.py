"""vms: converge bookkeeping (start_requested_at, converge_attempts, converge_after,
create_refusals)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 04:30:00

Create, start, stop and delete are intents carried out by backend/converge.py and the
jobs after the request that recorded them: a start its host has not confirmed is
`start_requested_at`; each failed try pushes `converge_after` back (backoff); a create refused by
`create_refusals` hosts in all fails.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch_op:
        batch_op.add_column(
            sa.Column("start_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("converge_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("converge_after", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("create_refusals", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch_op:
        batch_op.drop_column("create_refusals")
        batch_op.drop_column("converge_after")
        batch_op.drop_column("converge_attempts")
        batch_op.drop_column("start_requested_at")
