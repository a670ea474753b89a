"""hosts: a host key per host, delegated by the provider's wallet

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-01 10:00:00

Hosts registered before host keys are "legacy": their wallet signs, as before, until their
next setup run delegates a host key (backend/host_keys.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("host_key", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("host_key_state", sa.String(16), nullable=False, server_default="legacy")
        )
        batch.add_column(sa.Column("delegation", sa.Text(), nullable=True))
        batch.add_column(sa.Column("delegation_signature", sa.String(200), nullable=True))
        batch.add_column(sa.Column("delegated_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        for column in (
            "delegated_until",
            "delegation_signature",
            "delegation",
            "host_key_state",
            "host_key",
        ):
            batch.drop_column(column)
