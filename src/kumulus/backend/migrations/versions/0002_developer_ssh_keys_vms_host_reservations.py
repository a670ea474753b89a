"""developer ssh keys, vms, host reservations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:53:40.527990
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ssh_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ssh_keys", schema=None) as batch_op:
        batch_op.create_index("ux_ssh_keys_account_fp", ["account_id", "fingerprint"], unique=True)

    op.create_table(
        "vms",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("host_id", sa.String(length=32), nullable=True),
        sa.Column("agent_vm_id", sa.String(length=32), nullable=True),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("ssh_key", sa.Text(), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=False),
        sa.Column("memory", sa.BigInteger(), nullable=False),
        sa.Column("disk", sa.BigInteger(), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("intended_state", sa.String(length=16), nullable=False),
        sa.Column("actual_state", sa.String(length=16), nullable=False),
        sa.Column("reserved", sa.Boolean(), nullable=False),
        sa.Column("ssh_host", sa.String(length=255), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("vms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vms_account_id"), ["account_id"], unique=False)
        batch_op.create_index("ix_vms_host", ["host_id"], unique=False)
        batch_op.create_index("ux_vms_account_idem", ["account_id", "idempotency_key"], unique=True)

    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reserved_cpu", sa.Float(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("reserved_memory", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("reserved_disk", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("load", sa.Float(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("unknown_vms", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_index("ix_hosts_load", ["load"], unique=False)
        batch_op.create_index("ix_hosts_region_load", ["region", "load"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_index("ix_hosts_region_load")
        batch_op.drop_index("ix_hosts_load")
        batch_op.drop_column("unknown_vms")
        batch_op.drop_column("load")
        batch_op.drop_column("reserved_disk")
        batch_op.drop_column("reserved_memory")
        batch_op.drop_column("reserved_cpu")

    with op.batch_alter_table("vms", schema=None) as batch_op:
        batch_op.drop_index("ux_vms_account_idem")
        batch_op.drop_index("ix_vms_host")
        batch_op.drop_index(batch_op.f("ix_vms_account_id"))

    op.drop_table("vms")
    with op.batch_alter_table("ssh_keys", schema=None) as batch_op:
        batch_op.drop_index("ux_ssh_keys_account_fp")

    op.drop_table("ssh_keys")
