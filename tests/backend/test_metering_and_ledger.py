"""Metering: the exact debit / credit / fee for N seconds of a VM, disk-only while stopped,
no drift when charged in many steps, no double charge when two processes meter at once;
the ledger refuses unbalanced postings and promotional credit turning withdrawable."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import billing, ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.models import VM, Account, Host, LedgerEntry
from tests.backend.billing_fixtures import UNIT, account, host, placed

# 2 vCPU * 0.01 + 4 GiB * 0.005 + 20 GiB * 0.0001 = 0.042 per hour running; 0.002 stopped.
RUNNING = 42 * UNIT // 1000
STOPPED = 2 * UNIT // 1000
TERMS = billing.Terms(fee_bps=1000, window=600)


def _placed(db: Session, dev: Account, on: Host, t0: datetime, deposit: int = UNIT) -> VM:
    """A VM placed at t0 with its hold taken from `deposit` (deposit-funded)."""
    ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, dev.id), deposit, "deposit")
    return placed(db, dev, on, t0, TERMS)


def test_a_vm_running_n_seconds_is_charged_exactly(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    t0 = utcnow() - timedelta(hours=2)
    with db_.session() as db:
        prov, dev = account(db, "provider"), account(db, "developer")
        machine = _placed(db, dev, host(db, prov), t0)
        assert billing.rate_of(machine) == RUNNING
        assert billing.held_by(db, dev.id) == billing.hold_for(RUNNING, 600)  # ten minutes
        out = billing.settle(db, machine, TERMS, t0 + timedelta(seconds=90), to_state="stopped")
        db.commit()
        charged = RUNNING * 90 // 3600  # 0.00105 UNIT
        assert out.charged == charged and out.posted
        assert ledger.balance(db, ledger.PROVIDER, prov.id) == charged - charged // 10
        assert ledger.balance(db, ledger.PLATFORM, None) == charged // 10
        # The stopped VM keeps a hold for ten minutes of disk; the rest went back.
        assert billing.held_by(db, dev.id) == billing.hold_for(STOPPED, 600)
        assert ledger.balance(db, ledger.DEVELOPER, dev.id) == (
            UNIT - charged - billing.hold_for(STOPPED, 600)
        )
        legs = list(db.scalars(select(LedgerEntry).where(LedgerEntry.kind.in_(("usage", "fee")))))
        assert sorted(leg.kind for leg in legs) == ["fee", "usage", "usage"]
        assert sum(leg.amount for leg in legs) == 0

        # Stopped: disk only, posted once the hour is over.
        out = billing.settle(db, machine, TERMS, t0 + timedelta(seconds=90 + 3600))
        db.commit()
        assert out.charged == STOPPED and out.posted


def test_many_small_charges_equal_one_big_one(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    t0 = utcnow() - timedelta(hours=2)
    with db_.session() as db:
        prov, dev = account(db, "provider"), account(db, "developer")
        small = _placed(db, dev, host(db, prov), t0)
        big = _placed(db, dev, host(db, prov), t0)
        total = 0
        for i in range(1, 501):
            total += billing.settle(db, small, TERMS, t0 + timedelta(milliseconds=1234 * i)).charged
            db.commit()
        assert total == billing.settle(db, big, TERMS, t0 + timedelta(milliseconds=617_000)).charged


def test_concurrent_metering_never_charges_twice(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    t0 = utcnow() - timedelta(hours=1)
    with db_.session() as db:
        prov, dev = account(db, "provider"), account(db, "developer")
        vm_id = _placed(db, dev, host(db, prov), t0).id
    now = t0 + timedelta(minutes=30)

    def one(_: int) -> int:
        with db_.session() as db:
            row = db.get(VM, vm_id)
            assert row is not None
            charged = billing.settle(db, row, TERMS, now).charged
            db.commit()
            return charged

    with ThreadPoolExecutor(8) as pool:
        charges = list(pool.map(one, range(8)))
    assert sorted(charges)[-1] == RUNNING // 2 and sum(charges) == RUNNING // 2
    with db_.session() as db:
        row = db.get(VM, vm_id)
        assert row is not None
        posted = -sum(
            e.amount
            for e in db.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.vm_id == vm_id,
                    LedgerEntry.kind == "usage",
                    LedgerEntry.account_type.in_((ledger.HOLD, ledger.HOLD_PROMO)),
                )
            )
        )
        assert posted + row.accrued == RUNNING // 2  # charged once, posted or still accrued


def test_unbalanced_and_cross_class_postings_are_refused(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        locked = ledger.lock(db, [("platform", ""), ("promo", "1"), ("provider", "2")])
        with pytest.raises(ledger.LedgerError):
            ledger.post(db, locked, [ledger.Leg(ledger.PLATFORM, None, 5, "credit")])
        # Promotional credit paid straight to a withdrawable account: balanced, yet refused.
        with pytest.raises(ledger.LedgerError):
            ledger.post(
                db,
                locked,
                [
                    ledger.Leg(ledger.PROMO, 1, -5, "usage"),
                    ledger.Leg(ledger.PROVIDER, 2, 5, "usage"),
                ],
            )
        # Nobody's account goes below zero.
        with pytest.raises(ledger.OverdraftError):
            ledger.post(
                db,
                locked,
                [
                    ledger.Leg(ledger.PROVIDER, 2, -5, "payout"),
                    ledger.Leg(ledger.PLATFORM, None, 5, "payout"),
                ],
            )
        db.rollback()
