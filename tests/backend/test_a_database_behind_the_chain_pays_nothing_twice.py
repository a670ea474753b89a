"""A database older than the chain (a restore killed before it marked the database, or a
backend that ran during a restore) is noticed by the payout sender: the payout key's nonce
on chain is past every nonce the database knows, so payouts stop and the ones sent since
are found on chain first, as after a marked restore. A database in use never trips it."""

from __future__ import annotations

import shutil
from pathlib import Path

from kumulus.backend import ledger
from kumulus.backend import settlement_state as state
from kumulus.backend.deposits import DepositWatcher
from kumulus.backend.jobs import deposits
from kumulus.backend.payouts import PayoutWorker, request_payout
from kumulus.core.signing import Keypair, new_mnemonic
from tests.backend.billing_fixtures import UNIT
from tests.backend.fake_chain import FakeChain
from tests.backend.payout_fixtures import WALLET, earning_provider, payouts_of


def test_an_unmarked_old_copy_of_the_database_sends_nothing_twice(tmp_path: Path) -> None:
    live = tmp_path / "kumulus.db"
    db, provider = earning_provider(live)
    key = Keypair.create_from_mnemonic(new_mnemonic())
    chain = FakeChain()
    chain.balances[key.ss58_address] = 100 * UNIT
    with db.session() as s:
        request_payout(s, provider, WALLET, 2 * UNIT, minimum=1)
    db.engine.dispose()
    copy = tmp_path / "copy.db"
    shutil.copy(live, copy)  # the database as it was, with no restore mark
    worker = PayoutWorker(db, chain.client(), key)
    assert worker.run_once() == 1
    with db.session() as s:
        request_payout(s, provider, WALLET, 3 * UNIT, minimum=1)
    assert worker.run_once() == 1
    assert len(chain.sent) == 2
    db.engine.dispose()

    shutil.copy(copy, live)  # back to the old state; nothing says it is a restore
    worker = PayoutWorker(db, chain.client(), key)
    assert payouts_of(db) == [(2, "pending", None)]
    assert worker.run_once() == 0
    assert len(chain.sent) == 2  # the pending payout was not paid again
    assert payouts_of(db) == [(2, "paid", 0), (3, "paid", 1)]
    with db.session() as s:
        assert ledger.balance(s, ledger.PROVIDER, provider) == 5 * UNIT
        assert state.get(s, state.BLOCKED_RESTORE) is None  # accounted for: resumes
        request_payout(s, provider, WALLET, 5 * UNIT, minimum=1)
    assert worker.run_once() == 1
    assert payouts_of(db)[-1] == (5, "paid", 2)


def test_a_database_in_use_is_never_taken_for_an_old_one(tmp_path: Path) -> None:
    db, provider = earning_provider(tmp_path / "kumulus.db")
    key = Keypair.create_from_mnemonic(new_mnemonic())
    chain = FakeChain()
    chain.balances[key.ss58_address] = 100 * UNIT
    worker = PayoutWorker(db, chain.client(), key)
    for amount in (1, 2, 3):
        with db.session() as s:
            request_payout(s, provider, WALLET, amount * UNIT, minimum=1)
        assert worker.run_once() == 1
        with db.session() as s:
            assert state.get(s, state.BLOCKED_RESTORE) is None
    assert [n for _, _, n in payouts_of(db)] == [0, 1, 2]


def test_a_key_that_paid_someone_unknown_stops_payouts(tmp_path: Path) -> None:
    db, provider = earning_provider(tmp_path / "kumulus.db")
    key = Keypair.create_from_mnemonic(new_mnemonic())
    chain = FakeChain()
    chain.balances[key.ss58_address] = 100 * UNIT
    chain.transfer(key, "5SomebodyElse", UNIT)  # the key was used outside the platform
    with db.session() as s:
        request_payout(s, provider, WALLET, 2 * UNIT, minimum=1)
    assert PayoutWorker(db, chain.client(), key).run_once() == 0
    assert len(chain.sent) == 1
    with db.session() as s:
        reason = state.get(s, state.BLOCKED_RESTORE)
    assert reason is not None and "no provider's wallet" in reason


def test_the_deposits_job_running_first_does_not_hide_the_payouts_sent_since(
    tmp_path: Path,
) -> None:
    """The deposits job marks an old database before its cursor moves on: the payouts sent
    since are looked for from where that database's view of the chain ended."""
    live = tmp_path / "kumulus.db"
    db, provider = earning_provider(live)
    key = Keypair.create_from_mnemonic(new_mnemonic())
    chain = FakeChain()
    chain.balances[key.ss58_address] = 100 * UNIT
    watcher = DepositWatcher(db, chain.client(), "5DepositAddress")
    assert watcher.scan() == 0  # the cursor at the head
    with db.session() as s:
        request_payout(s, provider, WALLET, 2 * UNIT, minimum=1)
    db.engine.dispose()
    shutil.copy(live, tmp_path / "copy.db")
    assert PayoutWorker(db, chain.client(), key).run_once() == 1  # sent after the copy
    chain.empty_blocks(20)
    db.engine.dispose()

    shutil.copy(tmp_path / "copy.db", live)
    assert deposits.scan(watcher, db, chain.client(), key.ss58_address) == 0  # runs first
    with db.session() as s:
        cursor = watcher.cursor(s)
        assert cursor is not None and cursor > 20  # moved past the payout's block
    assert PayoutWorker(db, chain.client(), key).run_once() == 0
    assert len(chain.sent) == 1
    assert payouts_of(db) == [(2, "paid", 0)]
    with db.session() as s:
        assert state.get(s, state.BLOCKED_RESTORE) is None
