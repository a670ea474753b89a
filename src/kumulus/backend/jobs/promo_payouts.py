"""Job `promo-payouts`: pay providers' promotional earnings from the platform's fees,
within the promo budget (backend/promo_payouts.py). Exclusive lease; the limits hold even
without it (they are checked under the ledger's lock), the lease just saves the work."""

from __future__ import annotations

from kumulus.backend.db import Database
from kumulus.backend.promo_payouts import Budget, pay_promo_earnings
from kumulus.config import BackendSettings

NAME = "promo-payouts"


def pay(db: Database, settings: BackendSettings) -> int:
    """planck paid this run (0 when the budget or the per-provider cap is 0)."""
    return pay_promo_earnings(db, Budget.of(settings))
