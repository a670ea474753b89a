"""A chain transfer larger than any 64-bit integer (Balances amounts are u128) is credited
exactly and does not stall the deposit watcher: the deposits after it are credited too."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kumulus.backend import ledger
from kumulus.backend.db import Database
from kumulus.backend.deposits import DepositWatcher
from kumulus.backend.ledger_check import violations
from kumulus.backend.models import ChainDeposit, DeveloperWallet
from kumulus.core.money import INT64_MAX
from tests.backend.billing_fixtures import UNIT, account
from tests.backend.fake_chain import FakeChain

DEPOSIT, PAYER = "5DepositAddress", "5WhaleWallet"


def test_a_u128_transfer_is_credited_and_the_next_one_too(backend: TestClient) -> None:
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    with db.session() as s:
        dev = account(s, "developer")
        s.add(DeveloperWallet(address=PAYER, account_id=dev.id, linked_at=dev.created_at))
        s.commit()
        dev_id = dev.id
    chain = FakeChain()
    watcher = DepositWatcher(db, chain.client(), DEPOSIT)
    assert watcher.scan() == 0  # pins the chain at its head
    whale = 2**127 + 12345  # past int64 many times over; still a u128
    chain.pay(PAYER, DEPOSIT, whale)
    chain.pay(PAYER, DEPOSIT, 3 * UNIT)
    assert watcher.scan() == 2
    with db.session() as s:
        assert ledger.balance(s, ledger.DEVELOPER, dev_id) == whale + 3 * UNIT
        assert ledger.balance(s, ledger.DEVELOPER, dev_id) > INT64_MAX
        assert sorted(int(d.amount) for d in s.query(ChainDeposit)) == [3 * UNIT, whale]
        assert violations(s) == []
    assert watcher.scan() == 0  # nothing credited twice
