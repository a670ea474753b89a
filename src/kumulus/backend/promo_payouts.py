"""Promotional earnings paid out of the platform's fees, within a daily budget.

What promotional credit pays a provider lands on their `provider_promo` account, which is
never withdrawable: promotional credit was never paid for, so turning it into money that
leaves on chain would print money. The platform may still choose to reward it, out of
money it really earned: its fee account `platform`, which only deposit-funded charges
credit. A payment here is one ledger transaction with a balanced pair of legs per class:

    promo: provider_promo:<id> -> platform_promo   (the promotional earnings are retired)
    cash:  platform            -> provider:<id>    (withdrawable, paid from real fees)

so withdrawable provider earnings plus platform fees stay exactly what they were: never
more than developers paid from deposits, by construction, and `platform` can never go
below zero (the ledger refuses that posting whole; we never ask for more than it holds).

Limits, per UTC day: at most `daily_budget` planck across all providers
(`KUMULUS_BACKEND_PROMO_BUDGET`) and `per_provider_cap` per provider
(`KUMULUS_BACKEND_PROMO_PAYOUT_DAILY_CAP`); either at 0 pays nothing, the default. What was
paid is kept in `promo_payout_days` / `promo_payouts`, read and written only under the lock
of the `platform` balance (which every payment takes, through `ledger.lock`): two backend
processes, or a rerun after a crash, see each other's payments and never exceed a day's
limits. Nothing is paid while the ledger check fails (the payout circuit breaker)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import breaker, ledger
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import Balance, PromoPayout, PromoPayoutDay
from kumulus.config import BackendSettings

log = logging.getLogger(__name__)

KIND = "promo_payout"  # the ledger entries' kind


@dataclass(frozen=True)
class Budget:
    """planck per UTC day: across all providers, and for any one provider."""

    daily_budget: int
    per_provider_cap: int

    @classmethod
    def of(cls, settings: BackendSettings) -> Budget:
        return cls(settings.promo_budget_planck, settings.promo_payout_daily_cap_planck)

    @property
    def enabled(self) -> bool:
        return self.daily_budget > 0 and self.per_provider_cap > 0


def pay_promo_earnings(db: Database, budget: Budget, now: datetime | None = None) -> int:
    """Pay providers' promotional earnings from the platform's fees, within the day's
    limits, one provider per database transaction; returns the planck paid by this call.
    Providers paid least the day before go first, so a tight budget goes round. Safe to run in
    several processes at once and to rerun: the limits are checked under the lock of the
    `platform` balance against what is recorded for the day."""
    if not budget.enabled:
        return 0
    day = aware(now or utcnow()).date()
    with db.session() as s:
        due = _due(s, day, budget)
    if not due or not breaker.payouts_allowed(db):
        return 0
    paid = 0
    with db.session() as s:
        for account_id in due:
            amount, more = _pay_one(s, account_id, day, budget)
            paid += amount
            if not more:
                break
    if paid:
        log.info("paid %d planck of promotional earnings from platform fees (%s)", paid, day)
    return paid


def _due(s: Session, day: date, budget: Budget) -> list[int]:
    """Providers with promotional earnings and room under today's cap, in the order they
    get paid; none when the day's budget or the platform's fees are used up (a hint:
    `_pay_one` decides again under the lock)."""
    spent = s.scalar(select(PromoPayoutDay.amount).where(PromoPayoutDay.day == day))
    if int(spent or 0) >= budget.daily_budget or ledger.balance(s, ledger.PLATFORM, None) <= 0:
        return []
    pending = {
        int(key): int(amount)
        for key, amount in s.execute(
            select(Balance.account_key, Balance.amount).where(
                Balance.account_type == ledger.PROVIDER_PROMO
            )
        )
        if key.isdigit()  # a provider's account id; anything else is nobody's to pay
    }
    today = {
        a: int(amount)
        for a, amount in s.execute(
            select(PromoPayout.account_id, PromoPayout.amount).where(PromoPayout.day == day)
        )
    }
    yesterday = {
        a: int(amount)
        for a, amount in s.execute(
            select(PromoPayout.account_id, PromoPayout.amount).where(
                PromoPayout.day == day - timedelta(days=1)
            )
        )
    }
    due = [
        a
        for a, amount in pending.items()
        if amount > 0 and today.get(a, 0) < budget.per_provider_cap
    ]

    def turn(a: int) -> tuple[int, bytes]:
        # Whoever was paid least yesterday first; among equals an order that changes every
        # day (the same in every process), so no account id always wins a tight budget.
        return yesterday.get(a, 0), hashlib.sha256(f"{day}:{a}".encode()).digest()

    return sorted(due, key=turn)


def _pay_one(s: Session, account_id: int, day: date, budget: Budget) -> tuple[int, bool]:
    """One provider's payment, in its own committed transaction. Returns (planck paid,
    whether anything is left to pay anyone today: budget and platform fees)."""
    s.rollback()  # a fresh transaction: the lock comes before every read below
    platform = ledger.key_of(ledger.PLATFORM, None)
    earned = ledger.key_of(ledger.PROVIDER_PROMO, account_id)
    locked = ledger.lock(
        s,
        [
            platform,
            earned,
            ledger.key_of(ledger.PLATFORM_PROMO, None),
            ledger.key_of(ledger.PROVIDER, account_id),
        ],
    )
    # Under the platform lock: every payment of the day committed before it is visible
    # (each statement reads the latest commits on PostgreSQL; SQLite: one writer).
    day_row = s.execute(select(PromoPayoutDay).where(PromoPayoutDay.day == day)).scalar()
    mine = s.execute(
        select(PromoPayout).where(PromoPayout.day == day, PromoPayout.account_id == account_id)
    ).scalar()
    spent_today = 0 if day_row is None else int(day_row.amount)
    mine_today = 0 if mine is None else int(mine.amount)
    budget_left = budget.daily_budget - spent_today
    amount = min(
        locked[earned],
        budget.per_provider_cap - mine_today,
        budget_left,
        locked[platform],
    )
    if amount <= 0:
        s.rollback()
        return 0, budget_left > 0 and locked[platform] > 0
    ledger.post(
        s,
        locked,
        [
            ledger.Leg(ledger.PROVIDER_PROMO, account_id, -amount, KIND),
            ledger.Leg(ledger.PLATFORM_PROMO, None, amount, KIND),
            ledger.Leg(ledger.PLATFORM, None, -amount, KIND),
            ledger.Leg(ledger.PROVIDER, account_id, amount, KIND),
        ],
        memo=f"promotional earnings paid from platform fees (promo budget of {day} UTC)",
    )
    if day_row is None:
        s.add(PromoPayoutDay(day=day, amount=amount))
    else:
        day_row.amount = spent_today + amount
    if mine is None:
        s.add(PromoPayout(day=day, account_id=account_id, amount=amount))
    else:
        mine.amount = mine_today + amount
    s.commit()
    return amount, budget_left > amount and locked[platform] > 0


def paid_total(s: Session) -> int:
    """planck of promotional earnings the platform paid, ever (one row per day)."""
    return sum(int(a) for a in s.scalars(select(PromoPayoutDay.amount)))


def paid_to(s: Session, account_id: int) -> int:
    """planck of this provider's promotional earnings paid, ever (one row per day paid)."""
    return sum(
        int(a)
        for a in s.scalars(select(PromoPayout.amount).where(PromoPayout.account_id == account_id))
    )
