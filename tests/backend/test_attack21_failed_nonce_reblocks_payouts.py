"""ATTACK21 (an attacker review found it; fixed since): after a restore, a payout made
after the backup whose transfer FAILED on chain stops payouts for good, for everyone.

restored_payouts.reconcile accounts for such a nonce ("a transfer that failed on chain paid
nothing: its nonce is simply used") but records it nowhere. So the database still knows no
nonce that high, and on the next run notice_unknown_nonces (7b7bda4) finds the payout
key's nonce on chain past every nonce the database knows and raises `blocked:restore`
again; reconcile then looks for that nonce from `_scan_from`, which is by now the deposit
cursor, moved past the failed transfer's block by the deposit watcher: "nonces [0] of the
payout key were used but not found on chain", for ever (no command clears it). Until the
cursor moves, every run flips `blocked:restore` on and off.

A transfer fails on chain and still uses its nonce when e.g. the payout key is short of
its float (InsufficientBalance) or the amount would leave a new account below the
existential deposit."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumulus.backend import backups
from kumulus.backend import settlement_state as state
from kumulus.backend.deposits import DepositWatcher
from kumulus.backend.payouts import PayoutWorker, request_payout
from kumulus.chain.client import SignedExtrinsic
from kumulus.core.signing import load_keypair
from tests.backend.backup_fixtures import settings_for
from tests.backend.billing_fixtures import UNIT
from tests.backend.fake_chain import FakeChain
from tests.backend.payout_fixtures import WALLET, earning_provider

DEPOSIT = "5DepositAddress"


def _failed_transfer(chain: FakeChain, signer: str, dest: str, amount: int) -> int:
    """A transfer of `signer` included in a new block and failed (its nonce used)."""
    number = len(chain.blocks)
    chain.blocks.append([])
    used = chain.nonces.get(signer, 0)
    chain.nonces[signer] = used + 1
    chain.signed.setdefault(number, []).append(
        (
            signer,
            SignedExtrinsic(
                number, str(chain.block_hash(number)), "0x" + "ee" * 32, used, False, dest, amount
            ),
        )
    )
    return number


def test_a_failed_transfer_after_the_backup_does_not_stop_payouts_for_good(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'kumulus.db'}")
    db, provider_id = earning_provider(tmp_path / "data" / "kumulus.db")
    assert settings.payout_key_file is not None
    key = load_keypair(settings.payout_key_file)
    chain = FakeChain()
    chain.balances[key.ss58_address] = 100 * UNIT
    watcher = DepositWatcher(db, chain.client(), DEPOSIT)
    assert watcher.scan() == 0  # the deposit cursor, at the head (block 2)
    backups.backup(settings, tmp_path / "before.backup")

    # After the backup: a payout is requested and sent; its transfer fails on chain (nonce 0
    # used, nothing paid; the live database refunded it). Blocks go on.
    failed_in = _failed_transfer(chain, key.ss58_address, WALLET, 2 * UNIT)
    chain.empty_blocks(5)
    db.engine.dispose()

    backups.restore(settings, tmp_path / "before.backup")
    worker = PayoutWorker(db, chain.client(), key)
    assert worker.run_once() == 0  # reconciled: nonce 0 failed, nothing to record
    with db.session() as s:
        assert state.get(s, state.BLOCKED_RESTORE) is None
    assert DepositWatcher(db, chain.client(), DEPOSIT).scan() == 0  # the cursor moves on
    with db.session() as s:
        cursor = watcher.cursor(s)
        assert cursor is not None and cursor > failed_in

    # The provider asks again; nothing about the chain changed.
    with db.session() as s:
        request_payout(s, provider_id, WALLET, 2 * UNIT, minimum=1)
    for _ in range(3):
        worker.run_once()
    with db.session() as s:
        blocked = state.get(s, state.BLOCKED_RESTORE)
    # Failed before the fix: "nonces [0] of the payout key were used but not found on chain".
    assert blocked is None, blocked
    assert chain.sent == [(key.ss58_address, WALLET, 2 * UNIT)]


@pytest.mark.parametrize("marked", [True, False])
def test_a_restore_reconciles_after_the_deposit_watcher_ran(tmp_path: Path, marked: bool) -> None:
    """ATTACK21 (fixed since): a restore, marked (the ordinary one) or not (a
    PostgreSQL restore killed between pg_restore and its mark, the case 7b7bda4's
    notice_unknown_nonces is for). The deposit watcher runs every maintenance_interval like
    the payout sender (and is listed first) and moves the restored cursor to the head (up to
    500 blocks a run) before the sender reconciles; `_scan_from` then starts at the cursor,
    after the payouts sent since the backup, and payouts stay stopped for good ("used but
    not found") instead of being reconciled. Fail-safe (nothing is paid twice) but no
    command clears it. test_restored_backup_pays_nothing_twice never runs the watcher."""
    settings = settings_for(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'kumulus.db'}")
    db, provider_id = earning_provider(tmp_path / "data" / "kumulus.db")
    with db.session() as s:
        request_payout(s, provider_id, WALLET, 2 * UNIT, minimum=1)
    assert settings.payout_key_file is not None
    key = load_keypair(settings.payout_key_file)
    chain = FakeChain()
    chain.balances[key.ss58_address] = 100 * UNIT
    assert DepositWatcher(db, chain.client(), DEPOSIT).scan() == 0
    backups.backup(settings, tmp_path / "before.backup")
    assert PayoutWorker(db, chain.client(), key).run_once() == 1  # the pending one, nonce 0
    chain.empty_blocks(5)
    db.engine.dispose()

    backups.restore(settings, tmp_path / "before.backup")
    if not marked:
        state.clear_condition(db, state.BLOCKED_RESTORE)  # as if killed before the mark
    assert DepositWatcher(db, chain.client(), DEPOSIT).scan() == 0  # ran first
    worker = PayoutWorker(db, chain.client(), key)
    for _ in range(3):
        worker.run_once()
    with db.session() as s:
        blocked = state.get(s, state.BLOCKED_RESTORE)
    assert len(chain.sent) == 1  # not sent twice: this part holds
    # Failed before the fix: "nonces [0] of the payout key were used but not found on chain".
    assert blocked is None, blocked
