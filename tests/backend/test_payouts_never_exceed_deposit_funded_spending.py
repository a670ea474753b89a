"""Property: whatever the prices, sizes, durations and mix of promotional credit and
deposits, and whatever developers and providers do in whatever order (promotional
earnings paid from the platform's fees under any budget and cap included), no developer's
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
from kumulus.backend.models import VM, Balance, LedgerEntry, Payout
from kumulus.backend.payouts import PayoutError, request_payout
from kumulus.backend.promo_payouts import KIND, Budget, pay_promo_earnings
from kumulus.core.errors import PaymentRequiredError
from tests.backend.billing_fixtures import account, host, vm

UNIT = 10**12
amounts = st.integers(min_value=0, max_value=10**20)  # past 64 bits too
prices = st.integers(min_value=0, max_value=1000 * UNIT)  # the largest unit price allowed
funding = st.one_of(
    st.tuples(st.just("deposit"), st.integers(0, 1), amounts),
    st.tuples(st.just("promo"), st.integers(0, 1), amounts),
)
create = st.tuples(st.just("create"), st.integers(0, 1), st.integers(0, 1), prices, prices)
advance = st.tuples(st.just("advance"), st.integers(0, 30 * 86400 * 1000))  # milliseconds
# Every example opens with funds, a VM and some time, then anything goes: without that
# opening, few examples placed a VM at all, and promo payouts had no fees to come from.
big = st.integers(min_value=UNIT, max_value=10**20)
opening = st.tuples(
    st.tuples(st.just("deposit"), st.integers(0, 1), big),
    st.tuples(st.just("promo"), st.integers(0, 1), big),
    st.lists(funding, max_size=2),
    create,
    advance,
).map(lambda t: [t[0], t[1], *t[2], t[3], t[4]])
ops = st.lists(
    st.one_of(
        funding,
        create,
        advance,
        st.tuples(st.sampled_from(["stop", "start", "delete"]), st.integers(0, 7)),
        st.tuples(st.just("payout"), st.integers(0, 1), amounts),
        st.tuples(st.just("payout"), st.integers(0, 1), st.just(None)),  # all it can
        st.tuples(st.just("promo_payout"), amounts, amounts),  # day's budget, provider cap
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
@given(funds=opening, sequence=ops, promo_budget=st.tuples(amounts, amounts))
def test_no_sequence_pays_out_more_than_deposits_bought(
    ledger_db: Database,
    funds: list,  # type: ignore[type-arg]
    sequence: list,  # type: ignore[type-arg]
    promo_budget: tuple[int, int],
) -> None:
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
        for op in [*funds, *sequence]:
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
                # The promo-payouts job runs as time passes, at this example's settings.
                assert pay_promo_earnings(db_, Budget(*promo_budget), now) <= promo_budget[0]
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
            elif op[0] == "promo_payout":
                db.commit()  # it runs in its own transactions, as the job does
                paid = pay_promo_earnings(db_, Budget(op[1], op[2]), now)
                assert paid <= op[1]
            else:
                prov_id = prov_ids[op[1]]
                wanted = ledger.balance(db, ledger.PROVIDER, prov_id) if op[2] is None else op[2]
                with contextlib.suppress(PayoutError):  # refused: more than earned
                    request_payout(db, prov_id, "addr", wanted, 0)
            db.commit()
            assert violations(db) == []
            for d in dev_ids:
                for kind in (ledger.DEVELOPER, ledger.PROMO):
                    assert ledger.balance(db, kind, d) >= 0
        paid_out = sum(
            int(a) for a in db.scalars(select(Payout.amount).where(Payout.account_id.in_(prov_ids)))
        )
        credited: dict[str, int] = {"usage": 0, KIND: 0}
        for e in db.scalars(
            select(LedgerEntry).where(
                LedgerEntry.account_type == ledger.PROVIDER,
                LedgerEntry.account_id.in_(prov_ids),
                LedgerEntry.kind.in_(tuple(credited)),
            )
        ):
            credited[e.kind] += int(e.amount)
        assert credited["usage"] <= deposited
        assert paid_out <= credited["usage"] + credited[KIND]
        # Promo payouts move fees of any earlier example (the platform account is shared),
        # so the payouts are compared with what all examples' developers paid from deposits.
        everything_paid_out = sum(int(a) for a in db.scalars(select(Payout.amount)))
        deposit_funded_spending = sum(
            int(e.amount)
            for e in db.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.account_type.in_((ledger.PROVIDER, ledger.PLATFORM)),
                    LedgerEntry.kind.in_(("usage", "fee")),
                )
            )
        )
        assert everything_paid_out <= deposit_funded_spending
        # Exactly: what was spent from deposits is paid out, withdrawable, or fees.
        held_now = sum(
            int(amount)
            for kind, amount in db.execute(select(Balance.account_type, Balance.amount))
            if kind in (ledger.PROVIDER, ledger.PLATFORM)
        )
        assert everything_paid_out + held_now == deposit_funded_spending
        txns: dict[str, int] = {}
        for e in db.scalars(select(LedgerEntry).where(LedgerEntry.vm_id.in_(vm_ids))):
            txns[e.txn_id] = txns.get(e.txn_id, 0) + int(e.amount)
        assert all(total == 0 for total in txns.values())
