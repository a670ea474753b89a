"""Settlement belongs to one chain: a chain restarted from genesis (same genesis hash, block
numbers reused) or another chain stops deposits, payouts and anchors with one error in the
log, until `kumulus backend reset-chain-state` (which says what it forgets) adopts the new
chain; then a deposit in an early block of the new chain is credited. Paid history keeps
its genesis."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kumulus.backend import billing
from kumulus.backend import settlement_state as state
from kumulus.backend.db import Database
from kumulus.backend.deposits import DepositWatcher
from kumulus.backend.jobs.anchors import AnchorJob
from kumulus.backend.models import ChainCursor, ChainDeposit, DeveloperWallet, Payout
from kumulus.backend.payouts import PayoutWorker, request_payout
from kumulus.cli import app as cli
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import UNIT, account, earnings
from tests.backend.fake_chain import FakeChain

DEPOSIT = "5DepositAddress"
PAYER = "5PayerWallet"


def _developer(db: Database) -> int:
    with db.session() as s:
        dev = account(s, "developer")
        s.add(DeveloperWallet(address=PAYER, account_id=dev.id, linked_at=dev.created_at))
        s.commit()
        return dev.id


def test_a_restarted_chain_stops_settlement_until_reset(
    backend: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    dev_id = _developer(db)
    first = FakeChain()
    watcher = DepositWatcher(db, first.client(), DEPOSIT)
    assert watcher.scan() == 0  # pins the chain; the cursor starts at its head
    first.pay(PAYER, DEPOSIT, 5 * UNIT)
    first.empty_blocks(2)  # the cursor ends at block 5
    assert watcher.scan() == 1
    with db.session() as s:
        cursor = s.get(ChainCursor, "deposits")
        assert cursor is not None and cursor.block_number == 5
        assert cursor.genesis_hash == first.genesis
        assert cursor.block_hash == first.block_hash(5)
        assert [d.genesis_hash for d in s.query(ChainDeposit)] == [first.genesis]
        assert billing.balance(s, billing.DEVELOPER, dev_id) == 5 * UNIT

    # A provider was paid on the first chain (history), another payout is still unconfirmed.
    payout_key = keypair_from_mnemonic(new_mnemonic())
    first.balances[payout_key.ss58_address] = 100 * UNIT
    with db.session() as s:
        prov = account(s, "provider")
        earnings(s, prov.id, 4 * UNIT)
        s.commit()
        request_payout(s, prov.id, "5Provider", 2 * UNIT, minimum=1)
    assert PayoutWorker(db, first.client(), payout_key).run_once() == 1
    with db.session() as s:
        paid = s.query(Payout).one()
        assert paid.status == "paid" and paid.genesis_hash == first.genesis
        unconfirmed = request_payout(s, prov.id, "5Provider", 1 * UNIT, minimum=1)
        unconfirmed.status, unconfirmed.nonce, unconfirmed.genesis_hash = (
            "submitted", 7, first.genesis,
        )  # fmt: skip
        s.commit()
        unconfirmed_id = unconfirmed.id

    # The chain restarts from genesis: same genesis hash, only blocks 0-2 so far.
    second = first.restart()
    second.balances[payout_key.ss58_address] = 100 * UNIT
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        for _ in range(3):  # every job, every run: refused, logged once
            assert DepositWatcher(db, second.client(), DEPOSIT).scan() == 0
            assert PayoutWorker(db, second.client(), payout_key).run_once() == 0
            anchor_key = keypair_from_mnemonic(new_mnemonic())
            assert AnchorJob(db, second.client(), anchor_key, 1.0)(force=True) == 0
    stopped = [r for r in caplog.records if "settlement STOPPED" in r.getMessage()]
    assert len(stopped) == 1
    assert "behind block 5" in stopped[0].getMessage()
    assert "reset-chain-state" in stopped[0].getMessage()
    assert second.sent == []
    with db.session() as s:
        assert state.public_codes(s) == ["chain_identity"]
        assert state.banners(s, "developer")  # the consoles say deposits are paused

    # The operator resets: told exactly what is forgotten, asked first.
    runner = CliRunner()
    settings = backend.app.state.settings  # type: ignore[attr-defined]
    env = {
        "KUMULUS_DATABASE_URL": settings.db_url,
        "KUMULUS_BACKEND_DATA_DIR": str(settings.data_dir),
    }
    refused = runner.invoke(cli, ["backend", "reset-chain-state"], input="n\n", env=env)
    assert refused.exit_code == 1
    with db.session() as s:
        assert s.get(ChainCursor, "deposits") is not None  # nothing changed
    done = runner.invoke(cli, ["backend", "reset-chain-state"], input="y\n", env=env)
    assert done.exit_code == 0, done.output
    assert "the deposit cursor (block 5)" in done.output
    assert first.genesis in done.output
    assert f"payout {unconfirmed_id}: {UNIT} planck to 5Provider (nonce 7)" in done.output
    assert "Kept: 1 paid payout(s) and 1 deposit(s)" in done.output

    # The new chain is adopted; a deposit in its block 4 is credited.
    watcher = DepositWatcher(db, second.client(), DEPOSIT)
    assert watcher.scan() == 0
    assert second.pay(PAYER, DEPOSIT, 3 * UNIT) == 3
    assert second.pay(PAYER, DEPOSIT, 1 * UNIT) == 4
    assert watcher.scan() == 2
    with db.session() as s:
        assert billing.balance(s, billing.DEVELOPER, dev_id) == 9 * UNIT
        assert state.public_codes(s) == []
        assert state.get(s, state.GENESIS) == second.genesis
        refunded = s.get(Payout, unconfirmed_id)
        assert refunded is not None and refunded.status == "failed"
        assert billing.balance(s, billing.PROVIDER, prov.id) == 2 * UNIT  # 4 - 2 paid
        kept = s.query(Payout).filter(Payout.status == "paid").one()
        assert kept.genesis_hash == first.genesis


def test_another_genesis_is_refused_and_a_fixed_url_resumes(
    backend: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    _developer(db)
    ours = FakeChain()
    assert DepositWatcher(db, ours.client(), DEPOSIT).scan() == 0  # pinned
    other = FakeChain(genesis="0x" + "22" * 32, blocks=50)
    other.pay(PAYER, DEPOSIT, UNIT)
    with caplog.at_level(logging.ERROR):
        assert DepositWatcher(db, other.client(), DEPOSIT).scan() == 0
    assert f"has genesis {other.genesis}" in caplog.text
    assert f"belongs to the chain with genesis {ours.genesis}" in caplog.text
    with db.session() as s:
        assert s.query(ChainDeposit).count() == 0
        assert state.get(s, state.BLOCKED_CHAIN) is not None
    # The operator fixes the URL instead: the chain matches, settlement resumes by itself.
    ours.pay(PAYER, DEPOSIT, UNIT)
    assert DepositWatcher(db, ours.client(), DEPOSIT).scan() == 1
    with db.session() as s:
        assert state.get(s, state.BLOCKED_CHAIN) is None
