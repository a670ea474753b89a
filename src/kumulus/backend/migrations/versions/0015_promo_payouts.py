"""promo_payout_days, promo_payouts: promotional earnings paid from the platform's fees

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 04:00:00

The day's promo budget and each provider's daily cap are spent against these rows, written
in the transaction that posts the payment (backend/promo_payouts.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kumulus.backend.models import planck_column_type

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "promo_payout_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("amount", planck_column_type(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table(
        "promo_payouts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount", planck_column_type(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("day", "account_id"),
    )
    op.create_index(op.f("ix_promo_payouts_account_id"), "promo_payouts", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_promo_payouts_account_id"), table_name="promo_payouts")
    op.drop_table("promo_payouts")
    op.drop_table("promo_payout_days")
