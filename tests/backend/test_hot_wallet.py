"""Deposits land on their own address, not on the payout key; the payout key holds a float,
topped up from the deposit key, or (cold deposit address) flagged for the operator."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from kumulus.backend import settlement_state as state
from kumulus.backend.db import Database, migrate
from kumulus.backend.hot_wallet import DepositSide, deposit_side, top_up
from kumulus.backend.jobs import backend_jobs
from kumulus.backend.models import ChainDeposit
from kumulus.config import BackendSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import UNIT
from tests.backend.fake_chain import FakeChain


def test_the_deposit_key_is_its_own_and_the_watcher_watches_it(
    backend: TestClient, tmp_path: Path
) -> None:
    settings = BackendSettings(data_dir=tmp_path / "b")
    db = Database(settings.db_url)
    migrate(db.engine)
    deposit = deposit_side(db, settings)
    assert deposit.key is not None and deposit.address == deposit.key.ss58_address
    assert settings.deposit_key_file is not None
    assert settings.deposit_key_file.stat().st_mode & 0o777 == 0o600
    assert deposit_side(db, settings).address == deposit.address  # made once, then loaded
    payout_key = keypair_from_mnemonic(new_mnemonic())
    app = backend.app
    chain = FakeChain()
    jobs = backend_jobs(
        app.state.db,  # type: ignore[attr-defined]
        app.state.settings,  # type: ignore[attr-defined]
        app.state.keypair,  # type: ignore[attr-defined]
        chain.client(),
        payout_key,
        keypair_from_mnemonic(new_mnemonic()),
        deposit=deposit,
    )
    jobs.runner.run_now("deposits")  # starts at the head
    chain.pay("5Someone", deposit.address, UNIT)
    chain.pay("5Someone", payout_key.ss58_address, 2 * UNIT)
    jobs.runner.run_now("deposits")
    with app.state.db.session() as s:  # type: ignore[attr-defined]
        assert [int(d.amount) for d in s.query(ChainDeposit)] == [UNIT]  # the deposit only

    cold = keypair_from_mnemonic(new_mnemonic()).ss58_address
    cold_settings = BackendSettings(data_dir=tmp_path / "c", deposit_address=cold)
    cold_db = Database(cold_settings.db_url)
    migrate(cold_db.engine)
    side = deposit_side(cold_db, cold_settings)
    assert side == DepositSide(cold, None)
    assert not (tmp_path / "c" / "deposit-mnemonic").exists()  # no key for a cold address
    with pytest.raises(ValidationError, match="deposit_address"):
        BackendSettings(data_dir=tmp_path / "d", deposit_address="not-an-address")


def test_the_float_is_topped_up_from_the_deposit_key_or_flagged_when_cold(
    backend: TestClient,
) -> None:
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    chain = FakeChain()
    payout = keypair_from_mnemonic(new_mnemonic()).ss58_address
    key = keypair_from_mnemonic(new_mnemonic())
    hot = DepositSide(key.ss58_address, key)
    chain.balances[hot.address] = 500 * UNIT
    chain.balances[payout] = 30 * UNIT
    assert top_up(db, chain.client(), payout, hot, 100 * UNIT) == 70 * UNIT
    assert chain.balances[payout] == 100 * UNIT
    assert chain.sent == [(hot.address, payout, 70 * UNIT)]
    assert top_up(db, chain.client(), payout, hot, 100 * UNIT) == 0  # at the float

    # Not enough on the deposit key: what it can spare (keeping ED and fees), and a warning.
    chain.balances[payout] = 0
    chain.balances[hot.address] = 40 * UNIT
    assert top_up(db, chain.client(), payout, hot, 100 * UNIT) == 40 * UNIT - 10 - 2 * 5
    with db.session() as s:
        assert "deposit address holds no more" in str(state.get(s, state.WAITING_FLOAT))
        assert state.public_codes(s) == ["payout_float_low"]

    # A cold deposit address: nothing is sent, the operator is told how much to send.
    cold = DepositSide(keypair_from_mnemonic(new_mnemonic()).ss58_address, None)
    chain.balances[payout] = 60 * UNIT
    sent_before = list(chain.sent)
    assert top_up(db, chain.client(), payout, cold, 100 * UNIT) == 0
    assert chain.sent == sent_before
    with db.session() as s:
        reason = str(state.get(s, state.WAITING_FLOAT))
    assert f"send {40 * UNIT} planck" in reason and cold.address in reason
    chain.balances[payout] = 100 * UNIT  # the operator sent it
    assert top_up(db, chain.client(), payout, cold, 100 * UNIT) == 0
    with db.session() as s:
        assert state.get(s, state.WAITING_FLOAT) is None
