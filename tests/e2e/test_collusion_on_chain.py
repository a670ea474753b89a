"""Issue 11's collusion scenario, settled on a real chain (chopsticks): a provider pricing
its host absurdly and a developer with nothing but sign-up credit end with the developer at
zero (never below), the VM stopped for insufficient funds and the provider's payout
refused, nothing sent on chain; while deposit-funded usage is paid out exactly, checked
in the provider wallet's System.Account."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from kumulus.backend import billing, ledger
from kumulus.backend.billing import STOPPED_FOR_FUNDS
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.backend.ledger_check import violations
from kumulus.backend.payouts import PayoutError, PayoutWorker, request_payout
from kumulus.chain.client import ChainClient
from kumulus.chain.devnode import DevNode
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import account, host, placed
from tests.e2e.chain import UNIT, fund

pytestmark = pytest.mark.slow
TERMS = billing.Terms(fee_bps=1000, window=600)


def test_collusion_pays_nothing_out_and_deposits_pay_exactly(
    dev_chain: DevNode, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'money.db'}")
    migrate(db.engine)
    payout_key = keypair_from_mnemonic(new_mnemonic())
    fund(dev_chain, payout_key.ss58_address, 10 * UNIT)
    colluder_wallet = keypair_from_mnemonic(new_mnemonic()).ss58_address
    honest_wallet = keypair_from_mnemonic(new_mnemonic()).ss58_address
    t0 = utcnow() - timedelta(hours=2)
    with db.session() as s:
        # The colluding pair: 10 UNIT of sign-up credit, a host at 3 UNIT per vCPU-hour.
        colluder, free_dev = account(s, "provider"), account(s, "developer")
        billing.grant_promo(s, free_dev.id, 10 * UNIT, "sign-up credit")
        dear = host(s, colluder)
        dear.price_cpu_hour, dear.price_memory_gib_hour, dear.price_disk_gib_hour = 3 * UNIT, 0, 0
        # An honest pair: a deposit of 5 UNIT, a host at 0.5 UNIT per vCPU-hour.
        honest, payer = account(s, "provider"), account(s, "developer")
        ledger.transfer(s, (ledger.CHAIN, None), (ledger.DEVELOPER, payer.id), 5 * UNIT, "deposit")
        fair = host(s, honest)
        fair.price_cpu_hour, fair.price_memory_gib_hour, fair.price_disk_gib_hour = UNIT // 2, 0, 0
        s.commit()
        free_vm = placed(s, free_dev, dear, t0, TERMS)  # 2 vCPU: 6 UNIT/h, hold 1 UNIT
        paid_vm = placed(s, payer, fair, t0, TERMS)  # 2 vCPU: 1 UNIT/h
        # Two hours unmetered (12 UNIT owed on the dear host), then delete the paid one.
        now = t0 + timedelta(hours=2)
        out = billing.settle(s, free_vm, TERMS, now)
        billing.settle(s, paid_vm, TERMS, now, to_state="deleted")
        s.commit()
        assert out.stopped_for_funds and free_vm.failure_reason == STOPPED_FOR_FUNDS
        assert ledger.balance(s, ledger.PROMO, free_dev.id) == 0
        assert ledger.balance(s, ledger.DEVELOPER, free_dev.id) == 0  # never below zero
        assert ledger.balance(s, ledger.PROVIDER, colluder.id) == 0
        assert ledger.balance(s, ledger.PROVIDER_PROMO, colluder.id) == 9 * UNIT
        assert ledger.balance(s, ledger.DEVELOPER, payer.id) == 3 * UNIT  # 2 h at 1 UNIT/h
        assert violations(s) == []
        with pytest.raises(PayoutError, match="only 0 planck earned"):
            request_payout(s, colluder.id, colluder_wallet, UNIT, minimum=UNIT)
        earned = ledger.balance(s, ledger.PROVIDER, honest.id)
        assert earned == 2 * UNIT - 2 * UNIT // 10  # less the platform's 10 %
        request_payout(s, honest.id, honest_wallet, earned, minimum=UNIT)

    worker = PayoutWorker(db, ChainClient(dev_chain.url), payout_key)
    assert worker.run_once() == 1
    chain = ChainClient(dev_chain.url)
    try:
        assert chain.free_balance(honest_wallet) == earned  # to the planck
        assert chain.free_balance(colluder_wallet) == 0
    finally:
        chain.close()
