"""Property: under any sequence of usage charges, deposits and payouts the ledger balances
(every transaction and the whole ledger sum to zero) and each balance is what the
operations say it is; a payout larger than the earned balance is refused."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from kumulus.backend import billing
from kumulus.backend.db import Database, migrate
from kumulus.backend.models import LedgerEntry

DEVS, PROVS = [1, 2, 3], [11, 12]
amounts = st.integers(min_value=0, max_value=10**15)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.sampled_from(DEVS), amounts),
        st.tuples(
            st.just("usage"),
            st.sampled_from(DEVS),
            st.sampled_from(PROVS),
            amounts,
            st.integers(min_value=0, max_value=10_000),
        ),
        st.tuples(st.just("payout"), st.sampled_from(PROVS), amounts),
    ),
    max_size=40,
)


def payout(db, provider: int, amount: int) -> bool:  # type: ignore[no-untyped-def]
    """What the payout flow posts: only what the provider has earned."""
    if amount > billing.balance(db, billing.PROVIDER, provider):
        return False
    billing.post(
        db,
        [
            billing.Leg(billing.PROVIDER, provider, -amount, "payout"),
            billing.Leg(billing.CHAIN, None, amount, "payout"),
        ],
    )
    return True


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=ops)
def test_ledger_always_balances(tmp_path: Path, sequence: list[tuple]) -> None:  # type: ignore[type-arg]
    db_ = Database(f"sqlite:///{tmp_path}/ledger.db")
    migrate(db_.engine)
    expected: dict[tuple[str, int | None], int] = defaultdict(int)
    with db_.session() as db:
        db.query(LedgerEntry).delete()
        for op in sequence:
            if op[0] == "deposit":
                _, dev, amount = op
                billing.post(
                    db,
                    [
                        billing.Leg(billing.CHAIN, None, -amount, "deposit"),
                        billing.Leg(billing.DEVELOPER, dev, amount, "deposit"),
                    ],
                )
                expected[(billing.CHAIN, None)] -= amount
                expected[(billing.DEVELOPER, dev)] += amount
            elif op[0] == "usage":
                _, dev, prov, cost, fee_bps = op
                earned, fee = billing.split_fee(cost, fee_bps)
                assert earned >= 0 and fee >= 0 and earned + fee == cost
                billing.post(
                    db,
                    [
                        billing.Leg(billing.DEVELOPER, dev, -cost, "usage"),
                        billing.Leg(billing.PROVIDER, prov, earned, "usage"),
                        billing.Leg(billing.PLATFORM, None, fee, "fee"),
                    ],
                )
                expected[(billing.DEVELOPER, dev)] -= cost
                expected[(billing.PROVIDER, prov)] += earned
                expected[(billing.PLATFORM, None)] += fee
            else:
                _, prov, amount = op
                if payout(db, prov, amount):
                    expected[(billing.PROVIDER, prov)] -= amount
                    expected[(billing.CHAIN, None)] += amount
            db.flush()
            assert (db.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)))) == 0
        db.commit()
        for (kind, who), amount in expected.items():
            assert billing.balance(db, kind, who) == amount
        for prov in PROVS:
            assert billing.balance(db, billing.PROVIDER, prov) >= 0  # never paid out more
        per_txn = db.execute(
            select(LedgerEntry.txn_id, func.sum(LedgerEntry.amount)).group_by(LedgerEntry.txn_id)
        ).all()
        assert all(total == 0 for _, total in per_txn)
    db_.engine.dispose()
