"""The ledger invariant, checked from the running balances (exact Python integers).

At every instant: no account a person owns is below zero; each money class sums to zero
(no money made or lost, no promotional credit turned withdrawable); the chain account is
never positive (payouts never exceed deposits), so the withdrawable provider earnings
plus platform fees never exceed what developers paid in. `ledger.post` enforces each of
these per transaction; this check is the independent alarm the payout circuit breaker
listens to (a bug, a hand-edited row, a restored backup that does not add up)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import ledger
from kumulus.backend.models import Balance

# Every account a person owns, and the platform's fees (migration 0010 settles the rows of
# earlier versions so that this holds for them too; see its `_fund_past_usage`).
_MUST_NOT_BE_NEGATIVE = ledger.NEVER_NEGATIVE


def violations(db: Session) -> list[str]:
    """Every way the ledger's balances break the invariant right now (empty: it holds)."""
    problems: list[str] = []
    cash = promo = 0
    for account_type, key, amount in db.execute(
        select(Balance.account_type, Balance.account_key, Balance.amount)
    ):
        amount = int(amount)
        if account_type in ledger.CASH_ACCOUNTS:
            cash += amount
        elif account_type in ledger.PROMO_ACCOUNTS:
            promo += amount
        else:
            problems.append(f"unknown ledger account {account_type}:{key}")
        if account_type in _MUST_NOT_BE_NEGATIVE and amount < 0:
            problems.append(f"{account_type}:{key} is below zero ({amount})")
        if account_type == ledger.CHAIN and amount > 0:
            problems.append(f"more was paid out than deposited ({amount} planck)")
    if cash != 0:
        problems.append(f"deposit-funded accounts do not add up (off by {cash} planck)")
    if promo != 0:
        problems.append(f"promotional accounts do not add up (off by {promo} planck)")
    return problems
