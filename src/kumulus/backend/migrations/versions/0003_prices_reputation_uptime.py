"""prices, reputation and hourly uptime

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_PRICES = ("price_cpu_hour", "price_memory_gib_hour", "price_disk_gib_hour")


def upgrade() -> None:
    with op.batch_alter_table("provider_profiles", schema=None) as batch_op:
        for name in _PRICES:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=True))

    with op.batch_alter_table("hosts", schema=None) as batch_op:
        for name in _PRICES:
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)
            )
        for name in ("uptime_24h", "uptime_7d", "uptime_30d"):
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
        for name in ("leases_completed", "leases_failed"):
            batch_op.add_column(sa.Column(name, sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("reputation", sa.Float(), server_default="0.5", nullable=False)
        )
        batch_op.add_column(sa.Column("rep_tier", sa.Integer(), server_default="5", nullable=False))
        batch_op.drop_index("ix_hosts_region_load")
        batch_op.drop_index("ix_hosts_load")
        batch_op.create_index("ix_hosts_tier_load", [sa.text("rep_tier DESC"), "load"])
        batch_op.create_index(
            "ix_hosts_region_tier_load", ["region", sa.text("rep_tier DESC"), "load"]
        )

    op.create_table(
        "host_uptime",
        sa.Column("host_id", sa.String(length=32), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("up_seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("host_id", "hour"),
    )

    with op.batch_alter_table("vms", schema=None) as batch_op:
        for name in _PRICES:
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)
            )
        batch_op.add_column(sa.Column("max_price_hour", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vms", schema=None) as batch_op:
        batch_op.drop_column("max_price_hour")
        for name in _PRICES:
            batch_op.drop_column(name)
    op.drop_table("host_uptime")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_index("ix_hosts_region_tier_load")
        batch_op.drop_index("ix_hosts_tier_load")
        for name in (
            *_PRICES,
            "uptime_24h",
            "uptime_7d",
            "uptime_30d",
            "leases_completed",
            "leases_failed",
            "reputation",
            "rep_tier",
        ):
            batch_op.drop_column(name)
        batch_op.create_index("ix_hosts_load", ["load"])
        batch_op.create_index("ix_hosts_region_load", ["region", "load"])
    with op.batch_alter_table("provider_profiles", schema=None) as batch_op:
        for name in _PRICES:
            batch_op.drop_column(name)
