"""Metering: the exact debit / credit / fee for N seconds of a VM, disk-only while stopped,
no drift when charged in many steps, no double charge when two processes meter at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kumulus.backend import billing
from kumulus.backend.clock import utcnow
from kumulus.backend.models import VM, LedgerEntry
from tests.backend.billing_fixtures import UNIT, account, host, vm

# 2 vCPU * 0.01 + 4 GiB * 0.005 + 20 GiB * 0.0001 = 0.042 per hour running; 0.002 stopped.
RUNNING = 42 * UNIT // 1000
STOPPED = 2 * UNIT // 1000


def test_a_vm_running_n_seconds_is_charged_exactly(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    t0 = utcnow() - timedelta(hours=1)
    with db_.session() as db:
        prov, dev = account(db, "provider"), account(db, "developer")
        machine = vm(db, dev, host(db, prov), t0)
        db.commit()
        assert billing.rate_of(machine) == RUNNING
        charged = billing.meter(db, machine, fee_bps=1000, now=t0 + timedelta(seconds=90))
        assert charged == RUNNING * 90 // 3600  # 0.00105 UNIT
        assert billing.balance(db, billing.DEVELOPER, dev.id) == -charged
        assert billing.balance(db, billing.PROVIDER, prov.id) == charged - charged // 10
        assert billing.balance(db, billing.PLATFORM, None) == charged // 10
        legs = list(db.scalars(select(LedgerEntry).where(LedgerEntry.vm_id == machine.id)))
        assert sorted(leg.kind for leg in legs) == ["fee", "usage", "usage"]
        assert sum(leg.amount for leg in legs) == 0

        # Stopped: disk only.
        machine.intended_state = "stopped"
        db.commit()
        stopped = billing.meter(db, machine, 1000, now=t0 + timedelta(seconds=90 + 3600))
        assert stopped == STOPPED


def test_many_small_charges_equal_one_big_one(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    t0 = utcnow() - timedelta(hours=2)
    with db_.session() as db:
        prov, dev = account(db, "provider"), account(db, "developer")
        small, big = vm(db, dev, host(db, prov), t0), vm(db, dev, host(db, prov), t0)
        db.commit()
        total = sum(
            billing.meter(db, small, 1000, now=t0 + timedelta(milliseconds=1234 * i))
            for i in range(1, 501)
        )
        assert total == billing.meter(db, big, 1000, now=t0 + timedelta(milliseconds=1234 * 500))


def test_concurrent_metering_never_charges_twice(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    t0 = utcnow() - timedelta(hours=1)
    with db_.session() as db:
        prov, dev = account(db, "provider"), account(db, "developer")
        vm_id = vm(db, dev, host(db, prov), t0).id
        dev_id = dev.id
        db.commit()
    now = t0 + timedelta(minutes=30)

    def one(_: int) -> int:
        with db_.session() as db:
            row = db.get(VM, vm_id)
            assert row is not None
            return billing.meter(db, row, 1000, now=now)

    with ThreadPoolExecutor(8) as pool:
        charges = list(pool.map(one, range(8)))
    assert sorted(charges)[-1] == RUNNING // 2 and sum(charges) == RUNNING // 2
    with db_.session() as db:
        assert billing.balance(db, billing.DEVELOPER, dev_id) == -(RUNNING // 2)
        assert db.scalar(select(func.sum(LedgerEntry.amount))) == 0  # every txn balances


def test_unbalanced_transactions_are_refused(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        try:
            billing.post(db, [billing.Leg(billing.PLATFORM, None, 5, "credit")])
            raise AssertionError("must refuse")
        except billing.LedgerError:
            pass
