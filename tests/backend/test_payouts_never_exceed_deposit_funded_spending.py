"""Property: whatever the prices, sizes, durations and mix of promotional credit and
deposits, and whatever developers and providers do in whatever order, no developer's
funds go below zero, every transaction balances, the ledger invariant holds, and what
providers can be paid out never exceeds what developers paid from deposits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from kumulus.backend import billing, ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.backend.ledger_check import violations
from kumulus.backend.models import VM, LedgerEntry, Payout
from kumulus.backend.payouts import PayoutError, request_payout
from kumulus.core.errors import PaymentRequiredError
from tests.backend.billing_fixtures import account, host, vm

UNIT = 10**12
amounts = st.integers(min_value=0, max_value=10**20)  # past 64 bits too
prices = st.integers(min_value=0, max_value=1000 * UNIT)  # the largest unit price allowed
ops = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(0, 1), amounts),
        st.tuples(st.just("promo"), st.integers(0, 1), amounts),
        st.tuples(st.just("create"), st.integers(0, 1), st.integers(0, 1), prices, prices),
        st.tuples(st.just("advance"), st.integers(0, 30 * 86400 * 1000)),  # milliseconds
        st.tuples(st.sampled_from(["stop", "start", "delete"]), st.integers(0, 7)),
        st.tuples(st.just("payout"), st.integers(0, 1), amounts),
    ),
    max_size=30,
)
TERMS = billing.Terms(fee_bps=1000, window=600, post_every=3600, unfunded_grace=86400)


@pytest.fixture(scope="module")
def ledger_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One database for all examples (each uses accounts of its own): migrating one per
    example would cost most of the test's time."""
    db_ = Database(f"sqlite:///{tmp_path_factory.mktemp('ledger')}/ledger.db")
    migrate(db_.engine)
    yield db_


@settings(max_examples=80, deadline=None)
@given(sequence=ops)
def test_no_sequence_pays_out_more_than_deposits_bought(
    ledger_db: Database, sequence: list
) -> None:  # type: ignore[type-arg]
    db_ = ledger_db
    now = utcnow()
    with db_.session() as db:
        devs = [account(db, "developer") for _ in range(2)]
        provs = [account(db, "provider") for _ in range(2)]
        hosts = [host(db, p) for p in provs]
        db.commit()
        dev_ids, prov_ids = [d.id for d in devs], [p.id for p in provs]
        vm_ids: list[str] = []
        deposited = 0
        for op in sequence:
            if op[0] == "deposit":
                ledger.transfer(
                    db, (ledger.CHAIN, None), (ledger.DEVELOPER, dev_ids[op[1]]), op[2], "deposit"
                )
                deposited += op[2]
            elif op[0] == "promo":
                billing.grant_promo(db, dev_ids[op[1]], op[2], "credit")
            elif op[0] == "create":
                _, d, h, cpu_price, disk_price = op
                hosts[h].price_cpu_hour, hosts[h].price_disk_gib_hour = cpu_price, disk_price
                db.commit()
                machine = vm(db, devs[d], hosts[h], now)
                machine.metered_until = None
                db.commit()
                locked, _ = billing.lock_vms(db, [machine])
                try:
                    billing.take_hold(db, machine, locked, TERMS)
                except PaymentRequiredError:
                    db.rollback()
                    continue
                billing.start_metering(machine, now)
                vm_ids.append(machine.id)
            elif op[0] == "advance":
                now += timedelta(milliseconds=op[1])
                for vm_id in vm_ids:
                    row = db.get(VM, vm_id)
                    assert row is not None
                    if row.intended_state != "deleted":
                        billing.settle(db, row, TERMS, now)
                        db.commit()
            elif op[0] in ("stop", "start", "delete"):
                if not vm_ids:
                    continue
                row = db.get(VM, vm_ids[op[1] % len(vm_ids)])
                assert row is not None
                if row.intended_state == "deleted":
                    continue
                to = {"stop": "stopped", "start": "running", "delete": "deleted"}[op[0]]
                try:
                    billing.settle(db, row, TERMS, now, to_state=to, strict=to == "running")
                except PaymentRequiredError:
                    db.rollback()
                    continue
            else:
                with contextlib.suppress(PayoutError):  # refused: more than earned
                    request_payout(db, prov_ids[op[1]], "addr", op[2], 0)
            db.commit()
            assert violations(db) == []
            for d in dev_ids:
                for kind in (ledger.DEVELOPER, ledger.PROMO):
                    assert ledger.balance(db, kind, d) >= 0
        paid_out = sum(
            int(a) for a in db.scalars(select(Payout.amount).where(Payout.account_id.in_(prov_ids)))
        )
        deposit_funded_earnings = sum(
            int(e.amount)
            for e in db.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.account_type == ledger.PROVIDER,
                    LedgerEntry.account_id.in_(prov_ids),
                    LedgerEntry.kind == "usage",
                )
            )
        )
        assert paid_out <= deposit_funded_earnings <= deposited
        txns: dict[str, int] = {}
        for e in db.scalars(select(LedgerEntry).where(LedgerEntry.vm_id.in_(vm_ids))):
            txns[e.txn_id] = txns.get(e.txn_id, 0) + int(e.amount)
        assert all(total == 0 for total in txns.values())
