"""vms: host_key, host_key_fingerprint

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 05:00:00

Each VM's SSH host key, chosen by its agent and reported in the create answer, and its
SHA256 fingerprint computed by the backend: developers check the VM's identity on their
first connection. Null for VMs created before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch_op:
        batch_op.add_column(sa.Column("host_key", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("host_key_fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch_op:
        batch_op.drop_column("host_key_fingerprint")
        batch_op.drop_column("host_key")
