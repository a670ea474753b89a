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
from datetime import UTC, datetime

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
    adjustments = _fund_past_usage(bind)
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
    for account_type, account_id, amount in adjustments:
        sums[(account_type, "" if account_id is None else str(account_id))] += amount
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
    if adjustments:
        entries = sa.table(
            "ledger_entries",
            sa.column("txn_id", sa.String()),
            sa.column("account_type", sa.String()),
            sa.column("account_id", sa.Integer()),
            sa.column("amount", Planck()),
            sa.column("kind", sa.String()),
            sa.column("vm_id", sa.String()),
            sa.column("memo", sa.String()),
            sa.column("created_at", sa.DateTime(timezone=True)),
        )
        now = datetime.now(UTC)
        op.bulk_insert(
            entries,
            [
                {
                    "txn_id": "migration-0010",
                    "account_type": t,
                    "account_id": i,
                    "amount": a,
                    "kind": "adjust",
                    "vm_id": None,
                    "memo": "0010: usage paid with sign-up credit is promotional; usage paid "
                    "with nothing is voided",
                    "created_at": now,
                }
                for t, i, a in adjustments
                if a
            ],
        )


def _fund_past_usage(bind: sa.engine.Connection) -> list[tuple[str, int | None, int]]:
    """Before 0010 every charge came out of the developer's one balance, whatever funded it,
    and that balance could go below zero. Replay each developer's history (oldest first):
    a charge is paid from the sign-up credit left, then from deposits left, and the rest was
    paid by nothing. The credit-paid part moves to the promotional accounts (the provider's
    share to `provider_promo`, never withdrawable) and the unpaid part is voided (the
    provider never earned it), so that what providers can withdraw is exactly what
    deposits paid. Returns the adjustment legs (account type, account id, amount); an
    earning already paid out leaves its provider below zero, which stops payouts (the
    ledger check) until an operator settles it."""
    legs_by_txn: dict[str, list[tuple[str, int | None, int, str]]] = defaultdict(list)
    order: list[str] = []
    for txn, account_type, account_id, amount, kind in bind.execute(
        sa.text(
            "SELECT txn_id, account_type, account_id, amount, kind FROM ledger_entries ORDER BY id"
        )
    ):
        if txn not in legs_by_txn:
            order.append(txn)
        legs_by_txn[txn].append((account_type, account_id, int(amount), kind))
    credit: dict[int, int] = defaultdict(int)
    cash: dict[int, int] = defaultdict(int)
    out: dict[tuple[str, int | None], int] = defaultdict(int)
    for txn in order:
        legs = legs_by_txn[txn]
        for account_type, account_id, amount, kind in legs:
            if account_type != "developer" or account_id is None:
                continue
            if kind == "credit":
                credit[account_id] += amount
            elif kind != "usage":
                cash[account_id] += amount
        usage = [leg for leg in legs if leg[0] == "developer" and leg[3] == "usage"]
        if not usage or usage[0][1] is None:
            continue
        dev, cost = usage[0][1], -usage[0][2]
        if cost <= 0:
            continue
        from_credit = min(cost, max(credit[dev], 0))
        credit[dev] -= from_credit
        from_cash = min(cost - from_credit, max(cash[dev], 0))
        cash[dev] -= from_cash
        unpaid = cost - from_credit - from_cash
        earned = next((leg for leg in legs if leg[0] == "provider"), None)
        provider, provider_share = (earned[1], earned[2]) if earned else (None, 0)
        covered = shared = 0
        for part, promo in ((from_credit, True), (unpaid, False)):
            if part <= 0:
                continue
            # Cumulative rounding: parts that make up the whole charge move exactly the
            # provider's share and the fee, never a planck more.
            covered += part
            share = provider_share * covered // cost - shared
            shared += share
            fee = part - share
            # Undo that part of the charge in deposit-funded money ...
            out[("developer", dev)] += part
            out[("provider", provider)] -= share
            out[("platform", None)] -= fee
            if promo:  # ... and charge it to the credit instead.
                out[("promo", dev)] -= part
                out[("provider_promo", provider)] += share
                out[("platform_promo", None)] += fee
    return [(t, i, a) for (t, i), a in out.items()]


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
