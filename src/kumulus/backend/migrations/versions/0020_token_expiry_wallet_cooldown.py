"""api_tokens.expires_at required; provider_profiles: wallet_linked_at, wallet_payouts_from

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 08:00:00

Every API token expires (issue 13): tokens issued before, which never did, get 90 days
from this migration (the default `api_token_ttl`; a migration cannot read the settings).
A replaced payout wallet takes effect for payouts only after a cool-down: when the
wallet was linked and from when payouts may go to it (null: at once, as for every wallet
linked before).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_GRACE = timedelta(days=90)


def upgrade() -> None:
    tokens = sa.table("api_tokens", sa.column("expires_at", sa.DateTime(timezone=True)))
    op.execute(
        tokens.update()
        .where(tokens.c.expires_at.is_(None))
        .values(expires_at=datetime.now(UTC) + _GRACE)
    )
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.alter_column(
            "expires_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
    op.add_column(
        "provider_profiles",
        sa.Column("wallet_linked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "provider_profiles",
        sa.Column("wallet_payouts_from", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("provider_profiles") as batch_op:
        batch_op.drop_column("wallet_payouts_from")
        batch_op.drop_column("wallet_linked_at")
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=True)
