"""After a restore, payouts sent since the backup are found on chain and recorded before
anything is sent: one pending in the backup is not sent again, and earnings paid by one
made after the backup are not paid out again."""

from __future__ import annotations

from pathlib import Path

from kumulus.backend import backups, ledger
from kumulus.backend import settlement_state as state
from kumulus.backend.payouts import PayoutWorker, request_payout
from kumulus.core.signing import load_keypair
from tests.backend.backup_fixtures import settings_for
from tests.backend.billing_fixtures import UNIT
from tests.backend.fake_chain import FakeChain
from tests.backend.payout_fixtures import WALLET, earning_provider, payouts_of


def test_payouts_sent_after_the_backup_are_not_sent_again(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'kumulus.db'}")
    db, provider = earning_provider(tmp_path / "data" / "kumulus.db")
    assert settings.payout_key_file is not None
    key = load_keypair(settings.payout_key_file)
    chain = FakeChain()
    chain.balances[key.ss58_address] = 100 * UNIT
    with db.session() as s:
        request_payout(s, provider, WALLET, 2 * UNIT, minimum=1)
    backups.backup(settings, tmp_path / "before.backup")
    # After the backup: the pending payout is sent, and another is requested and sent.
    worker = PayoutWorker(db, chain.client(), key)
    assert worker.run_once() == 1
    with db.session() as s:
        request_payout(s, provider, WALLET, 3 * UNIT, minimum=1)
    assert worker.run_once() == 1
    assert len(chain.sent) == 2
    db.engine.dispose()

    backups.restore(settings, tmp_path / "before.backup")
    assert payouts_of(db) == [(2, "pending", None)]  # the backup's view
    worker = PayoutWorker(db, chain.client(), key)
    assert worker.run_once() == 0
    assert len(chain.sent) == 2  # nothing paid again
    assert payouts_of(db) == [(2, "paid", 0), (3, "paid", 1)]
    with db.session() as s:
        assert ledger.balance(s, ledger.PROVIDER, provider) == 5 * UNIT
        assert state.get(s, state.BLOCKED_RESTORE) is None
        request_payout(s, provider, WALLET, 5 * UNIT, minimum=1)
    assert worker.run_once() == 1  # payouts resume, with the next nonce
    assert payouts_of(db)[-1] == (5, "paid", 2)
    assert len(chain.sent) == 3


def test_a_payout_key_nonce_that_cannot_be_explained_keeps_payouts_stopped(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'kumulus.db'}")
    db, provider = earning_provider(tmp_path / "data" / "kumulus.db")
    assert settings.payout_key_file is not None
    key = load_keypair(settings.payout_key_file)
    chain = FakeChain()
    chain.balances[key.ss58_address] = 100 * UNIT
    backups.backup(settings, tmp_path / "before.backup")
    chain.transfer(key, "5SomebodyElse", UNIT)  # the payout key paid someone unknown
    db.engine.dispose()
    backups.restore(settings, tmp_path / "before.backup")
    with db.session() as s:
        request_payout(s, provider, WALLET, 2 * UNIT, minimum=1)
    worker = PayoutWorker(db, chain.client(), key)
    assert worker.run_once() == 0
    assert len(chain.sent) == 1 and payouts_of(db) == [(2, "pending", None)]
    with db.session() as s:
        reason = state.get(s, state.BLOCKED_RESTORE)
    assert reason is not None and "no provider's wallet" in reason
