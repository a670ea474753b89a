"""Heartbeat replay protection by signed time per host instead of one nonce row each

Revision ID: 0028
Revises: 0027
Create Date: 2026-11-30 20:20:00

A heartbeat is stored only when it is signed later than the newest one stored for its
host (`hosts.heartbeat_signed_at`, written in the host update every heartbeat makes
anyway), as a Substrate account's transactions carry increasing nonces. Heartbeats no
longer write a `seen_nonces` row each (an insert into two indexes, and a delete by the
pruning job later: a fifth of the database's time per heartbeat). Registration and
address envelopes keep their nonces.

The column starts at the newest heartbeat each host has stored, so an envelope accepted
just before the upgrade cannot be replayed just after it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("heartbeat_signed_at", sa.Float(), nullable=True))
    op.execute(
        "UPDATE hosts SET heartbeat_signed_at ="
        " (SELECT max(signed_at) FROM heartbeats WHERE heartbeats.host_id = hosts.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch_op:
        batch_op.drop_column("heartbeat_signed_at")
