"""Prepaid holds, promotional credit, running balances, exact u128 amounts

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 01:50:00

- Amounts (ledger entries, chain deposits, payouts) become exact and u128-wide:
  NUMERIC(39, 0) on PostgreSQL, decimal text on SQLite (whose INTEGER is 64-bit and turns
  into REAL past it); BIGINT overflowed on a large chain transfer or charge.
- `balances`: the running balance of every ledger account, filled from the ledger here.
- Sign-up credit granted so far moves to the promotional accounts (`promo` for the
  developer, `platform_promo` for the issuer), so it can never be paid out.
- VMs get `accrued` (usage charged on their hold, not yet posted), `posted_at` and
  `unfunded_since`.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from kumulus.backend.models import Planck, planck_column_type

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_AMOUNTS = (
    ("ledger_entries", "amount", False),
    ("chain_deposits", "amount", False),
    ("payouts", "amount", False),
    ("payouts", "fee", True),
)


def _retype(old: sa.types.TypeEngine, new: sa.types.TypeEngine, pg_type: str) -> None:  # type: ignore[type-arg]
    tables: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for table, column, nullable in _AMOUNTS:
        tables[table].append((column, nullable))
    for table, columns in tables.items():
        with op.batch_alter_table(table) as batch_op:
            for column, nullable in columns:
                batch_op.alter_column(
                    column,
                    type_=new,
                    existing_type=old,
                    existing_nullable=nullable,
                    postgresql_using=f"{column}::{pg_type}",
                )


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column("account_type", sa.String(length=16), nullable=False),
        sa.Column("account_key", sa.String(length=32), nullable=False),
        sa.Column("amount", planck_column_type(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("account_type", "account_key"),
    )
    with op.batch_alter_table("vms") as batch_op:
        batch_op.add_column(
            sa.Column("accrued", planck_column_type(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("unfunded_since", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "UPDATE ledger_entries SET account_type = 'promo'"
            " WHERE kind = 'credit' AND account_type = 'developer'"
        )
    )
    bind.execute(
        sa.text(
            "UPDATE ledger_entries SET account_type = 'platform_promo'"
            " WHERE kind = 'credit' AND account_type = 'platform'"
        )
    )
    # Summed in Python: exact whatever the sizes (SQLite's SUM overflows at 64 bits).
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for account_type, account_id, amount in bind.execute(
        sa.text("SELECT account_type, account_id, amount FROM ledger_entries")
    ):
        sums[(account_type, "" if account_id is None else str(account_id))] += int(amount)
    _retype(sa.BigInteger(), planck_column_type(), "numeric(39,0)")
    balances = sa.table(
        "balances",
        sa.column("account_type", sa.String()),
        sa.column("account_key", sa.String()),
        sa.column("amount", Planck()),
    )
    if sums:
        op.bulk_insert(
            balances,
            [{"account_type": t, "account_key": k, "amount": v} for (t, k), v in sums.items()],
        )


def downgrade() -> None:
    _retype(planck_column_type(), sa.BigInteger(), "bigint")
    bind = op.get_bind()
    bind.execute(
        sa.text("UPDATE ledger_entries SET account_type = 'developer' WHERE account_type = 'promo'")
    )
    bind.execute(
        sa.text(
            "UPDATE ledger_entries SET account_type = 'platform'"
            " WHERE account_type = 'platform_promo'"
        )
    )
    with op.batch_alter_table("vms") as batch_op:
        batch_op.drop_column("unfunded_since")
        batch_op.drop_column("posted_at")
        batch_op.drop_column("accrued")
    op.drop_table("balances")
