"""hosts.ref_price (ranked by within a tier) and hosts.capacity_problem

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 10:00:00

The scheduler prefers, within a reputation tier, the host where a reference VM (1 vCPU,
2 GiB memory, 20 GiB disk: kumulus.core.money.REFERENCE_VM) costs least, then the least
loaded: one index on (rep_tier DESC, ref_price, load) replaces (rep_tier DESC, load).
Existing hosts get their reference price from their unit prices. `capacity_problem` says
why a host's reported machine cannot hold what it declared (set by heartbeats).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ref_price", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("capacity_problem", sa.String(length=300), nullable=True))
        batch_op.drop_index("ix_hosts_region_tier_load")
        batch_op.drop_index("ix_hosts_tier_load")
        batch_op.create_index(
            "ix_hosts_tier_price_load", [sa.text("rep_tier DESC"), "ref_price", "load"]
        )
        batch_op.create_index(
            "ix_hosts_region_tier_price_load",
            ["region", sa.text("rep_tier DESC"), "ref_price", "load"],
        )
    # REFERENCE_VM at each host's unit prices (whole units: exact integer arithmetic).
    op.execute(
        "UPDATE hosts SET ref_price ="
        " price_cpu_hour + 2 * price_memory_gib_hour + 20 * price_disk_gib_hour"
    )


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_index("ix_hosts_region_tier_price_load")
        batch_op.drop_index("ix_hosts_tier_price_load")
        batch_op.create_index("ix_hosts_tier_load", [sa.text("rep_tier DESC"), "load"])
        batch_op.create_index(
            "ix_hosts_region_tier_load", ["region", sa.text("rep_tier DESC"), "load"]
        )
        batch_op.drop_column("capacity_problem")
        batch_op.drop_column("ref_price")
