"""A database with a provider who has earnings and a linked wallet, for the payout tests,
and a compact view of its payouts."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from kumulus.backend.db import Database, migrate
from kumulus.backend.models import Payout, ProviderProfile
from tests.backend.billing_fixtures import UNIT, account, earnings

WALLET = "5ProviderWallet"


def earning_provider(path: Path) -> tuple[Database, int]:
    """A migrated SQLite database at `path` whose provider (the id returned) earned 10
    units and linked WALLET."""
    db = Database(f"sqlite:///{path}")
    migrate(db.engine)
    with db.session() as s:
        provider = account(s, "provider")
        s.add(ProviderProfile(account_id=provider.id, wallet_address=WALLET))
        earnings(s, provider.id, 10 * UNIT)
        s.commit()
        return db, provider.id


def payouts_of(db: Database) -> list[tuple[int, str, int | None]]:
    """(units, status, nonce) of every payout, by nonce then id."""
    with db.session() as s:
        return [
            (int(p.amount) // UNIT, p.status, p.nonce)
            for p in s.scalars(select(Payout).order_by(Payout.nonce, Payout.id))
        ]
