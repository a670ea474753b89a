"""chain identity (genesis hash on cursors, deposits, payouts, anchors), payout send time,
settlement state (pinned chain, blocked / waiting reasons)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 01:10:00

Rows written before this migration have no genesis hash: the first backend that checks the
chain after it adopts that chain for them (only if the chain still has the blocks they name).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chain_cursors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("genesis_hash", sa.String(length=66), nullable=True))
        batch_op.add_column(sa.Column("block_hash", sa.String(length=66), nullable=True))
    with op.batch_alter_table("chain_deposits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("genesis_hash", sa.String(length=66), nullable=True))
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("genesis_hash", sa.String(length=66), nullable=True))
        batch_op.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_payouts_submitted_at"), ["submitted_at"])
    with op.batch_alter_table("anchors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("genesis_hash", sa.String(length=66), nullable=True))
    op.create_table(
        "settlement_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("settlement_state")
    with op.batch_alter_table("anchors", schema=None) as batch_op:
        batch_op.drop_column("genesis_hash")
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payouts_submitted_at"))
        batch_op.drop_column("submitted_at")
        batch_op.drop_column("genesis_hash")
    with op.batch_alter_table("chain_deposits", schema=None) as batch_op:
        batch_op.drop_column("genesis_hash")
    with op.batch_alter_table("chain_cursors", schema=None) as batch_op:
        batch_op.drop_column("block_hash")
        batch_op.drop_column("genesis_hash")
