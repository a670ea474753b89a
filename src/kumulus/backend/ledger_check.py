"""The ledger invariant, checked (the payout circuit breaker asks before every send).

`violations(db)` lists what is wrong, empty when all holds. Here: payouts (all but failed
ones: pending, submitted and paid money has left the providers' earnings) never exceed the
deposits credited from the chain; what was paid out can only have come from what was paid
in. Sums are taken in Python integers, not SQL SUM: amounts are exact integers of any size
(u128 on chain), which SQL sums over text or NUMERIC columns would round or overflow."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend.models import ChainDeposit, Payout


def violations(db: Session) -> list[str]:
    """What breaks the ledger invariant now; an empty list when nothing does."""
    out = db.scalars(select(Payout.amount).where(Payout.status != "failed"))
    paid_out = sum(int(a) for a in out)
    credited = sum(
        int(a)
        for a in db.scalars(
            select(ChainDeposit.amount).where(
                ChainDeposit.account_id.is_not(None), ChainDeposit.txn_id.is_not(None)
            )
        )
    )
    if paid_out > credited:
        return [
            f"payouts ({paid_out} planck, not failed) exceed the deposits credited from the "
            f"chain ({credited} planck)"
        ]
    return []
