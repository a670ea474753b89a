"""The current hour's uptime on the host row

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-01 00:20:00

Each batch of heartbeats credited uptime with an upsert into host_uptime, one row per
host and hour: 15-21 µs of PostgreSQL time per heartbeat, on top of the host update that
every heartbeat makes anyway. The current hour's seconds now live on the host row
(`uptime_hour`, `uptime_seconds`) and are set by that update; the first heartbeat of a
later hour moves them to host_uptime, once per host and hour. Readers add the host row's
hour to host_uptime (reputation.recompute, heartbeats.uptime_by_hour).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("uptime_hour", sa.BigInteger(), nullable=True))
    op.add_column(
        "hosts", sa.Column("uptime_seconds", sa.Float(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    # What the host rows hold goes back to host_uptime first: nothing credited is lost.
    op.execute(
        "INSERT INTO host_uptime (host_id, hour, up_seconds)"
        " SELECT id, uptime_hour, uptime_seconds FROM hosts"
        " WHERE uptime_hour IS NOT NULL AND uptime_seconds > 0"
        " ON CONFLICT (host_id, hour)"
        " DO UPDATE SET up_seconds = host_uptime.up_seconds + excluded.up_seconds"
    )
    with op.batch_alter_table("hosts") as batch_op:
        batch_op.drop_column("uptime_seconds")
        batch_op.drop_column("uptime_hour")
