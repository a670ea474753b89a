"""hosts: a host key per host, delegated by the provider's wallet

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 10:00:00

Hosts registered before host keys are "legacy": their wallet signs, as before, until their
next setup run delegates a host key (backend/host_keys.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, no batch mode: SQLite's batch mode copies the table and rebuilds its
    # indexes without their DESC order, which slows placement (see 0016).
    op.add_column("hosts", sa.Column("host_key", sa.String(64), nullable=True))
    op.add_column(
        "hosts",
        sa.Column("host_key_state", sa.String(16), nullable=False, server_default="legacy"),
    )
    op.add_column("hosts", sa.Column("delegation", sa.Text(), nullable=True))
    op.add_column("hosts", sa.Column("delegation_signature", sa.String(200), nullable=True))
    op.add_column("hosts", sa.Column("delegated_until", sa.DateTime(timezone=True), nullable=True))


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
