"""anchors of usage and reputation digests

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "anchors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("leaf_count", sa.Integer(), nullable=False),
        sa.Column("max_entry_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("extrinsic_hash", sa.String(length=66), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "anchor_leaves",
        sa.Column("anchor_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("other_account_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["anchor_id"], ["anchors.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("anchor_id", "index"),
    )
    with op.batch_alter_table("anchor_leaves", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_anchor_leaves_account_id"), ["account_id"])
        batch_op.create_index(batch_op.f("ix_anchor_leaves_other_account_id"), ["other_account_id"])


def downgrade() -> None:
    op.drop_table("anchor_leaves")
    op.drop_table("anchors")
