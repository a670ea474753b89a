"""The ledger entries' index on txn_id is dropped: nothing reads entries by transaction

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-01 15:40:00

Every ledger entry wrote an entry into `ix_ledger_txn`, two per placement and per usage
charge, and no code looks entries up by transaction: statements read by account
(`ix_ledger_account`), anchors and audits read by id range and group legs in memory. On
bench/scheduler it was a fifth of the ledger COPY's database time. An operator who wants
to look transactions up often can create the index on a replica.
"""

from __future__ import annotations

from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_ledger_txn", table_name="ledger_entries")


def downgrade() -> None:
    op.create_index("ix_ledger_txn", "ledger_entries", ["txn_id"], unique=False)
