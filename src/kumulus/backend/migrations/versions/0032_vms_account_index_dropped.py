"""The VMs' index on account_id alone is dropped: the unique (account_id, idempotency_key)
index serves the same lookups

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-01 12:40:00

Every lookup of a developer's VMs (`account_id = ?`, and the cascade when an account is
deleted) can walk `ux_vms_account_idem`, whose first column is account_id. The second
index was written on every VM insert and on every VM row update that cannot stay on its
page, such as each placement's (it sets host_id, itself indexed): one index entry per VM
for nothing.
"""

from __future__ import annotations

from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_vms_account_id", table_name="vms")


def downgrade() -> None:
    op.create_index("ix_vms_account_id", "vms", ["account_id"], unique=False)
