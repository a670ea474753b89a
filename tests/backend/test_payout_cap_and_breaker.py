"""What the payout key may send is bounded: at most the daily cap in any 24 hours (a payout
over it waits, pending, and goes once the window frees up), and nothing at all while the
ledger check fails (the circuit breaker: one loud error, a state in /healthz, a banner)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from kumulus.backend import ledger
from kumulus.backend import settlement_state as state
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import Balance, ChainDeposit, Payout
from kumulus.backend.payouts import PayoutWorker, request_payout
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import UNIT, account, earnings
from tests.backend.fake_chain import FakeChain


def _deposited(db: Database, chain: FakeChain, amount: int) -> None:
    """A deposit credited from the chain (what the ledger check counts)."""
    n = chain.pay("5Dev", "5Deposit", amount)
    with db.session() as s:
        s.add(
            ChainDeposit(
                block_hash=chain.block_hash(n), event_index=1, block_number=n, sender="5Dev",
                amount=amount, account_id=1, txn_id=f"t{n}", seen_at=utcnow(),
                genesis_hash=chain.genesis,
            )
        )  # fmt: skip
        s.commit()


def _provider(db: Database, earned: int) -> int:
    with db.session() as s:
        prov = account(s, "provider")
        earnings(s, prov.id, earned)
        s.commit()
        return prov.id


def _provider_out_of_nothing(db: Database, earned: int) -> int:
    """Earnings written straight into the balances (a hand-edited row, a bug, a restore
    that does not add up): no deposit pays for them."""
    with db.session() as s:
        prov = account(s, "provider")
        s.add(Balance(account_type=ledger.PROVIDER, account_key=str(prov.id), amount=earned))
        s.commit()
        return prov.id


def _statuses(db: Database) -> list[str]:
    with db.session() as s:
        return [p.status for p in s.query(Payout).order_by(Payout.id)]


def test_a_payout_over_the_daily_cap_waits(backend: TestClient) -> None:
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    chain, key = FakeChain(), keypair_from_mnemonic(new_mnemonic())
    _deposited(db, chain, 100 * UNIT)
    prov = _provider(db, 20 * UNIT)
    chain.balances[key.ss58_address] = 100 * UNIT
    with db.session() as s:
        for amount in (4, 5, 2):
            request_payout(s, prov, "5Provider", amount * UNIT, minimum=1)
    worker = PayoutWorker(db, chain.client(), key, daily_cap=10 * UNIT)
    assert worker.run_once() == 2  # 4 + 5 fit under 10
    assert worker.run_once() == 0
    assert _statuses(db) == ["paid", "paid", "pending"]  # 9 + 2 > 10: waits, not failed
    with db.session() as s:
        assert "daily cap" in str(state.get(s, state.WAITING_CAP))
        assert state.banners(s, "provider")
    # A day later the window has room again.
    with db.session() as s:
        s.execute(update(Payout).values(submitted_at=utcnow() - timedelta(hours=25)))
        s.commit()
    assert worker.run_once() == 1
    assert _statuses(db) == ["paid", "paid", "paid"]
    assert [a for _, _, a in chain.sent] == [4 * UNIT, 5 * UNIT, 2 * UNIT]
    with db.session() as s:
        assert state.get(s, state.WAITING_CAP) is None


def test_the_circuit_breaker_stops_every_payout_loudly(
    backend: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    chain, key = FakeChain(), keypair_from_mnemonic(new_mnemonic())
    _deposited(db, chain, 3 * UNIT)
    prov = _provider_out_of_nothing(db, 10 * UNIT)
    chain.balances[key.ss58_address] = 100 * UNIT
    with db.session() as s:
        request_payout(s, prov, "5Provider", 2 * UNIT, minimum=1)
        request_payout(s, prov, "5Provider", 2 * UNIT, minimum=1)
    worker = PayoutWorker(db, chain.client(), key)
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert worker.run_once() == 0
    assert chain.sent == []  # nothing left: not even the first, which alone would fit
    assert _statuses(db) == ["pending", "pending"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "circuit breaker tripped, ALL payouts stopped" in errors[0]
    assert "deposit-funded accounts do not add up" in errors[0]
    with db.session() as s:
        assert state.public_codes(s) == ["circuit_breaker"]
        assert any("circuit breaker" in b for b in state.banners(s, "provider"))
        assert state.banners(s, "developer") == []
    # Once the ledger holds again (here: the operator recorded the deposit that paid for
    # them), payouts resume.
    with db.session() as s:
        chain_in = ledger.balance(s, ledger.CHAIN, None) - 10 * UNIT
        s.execute(
            update(Balance).where(Balance.account_type == ledger.CHAIN).values(amount=chain_in)
        )
        s.commit()
    assert worker.run_once() == 2
    with db.session() as s:
        assert state.public_codes(s) == []
