"""On a real chain (chopsticks): a development chain restarted from its spec has the same
genesis hash and reuses block numbers; the deposit watcher sees it is not the chain it
followed and stops, and after a reset it credits a deposit in an early block of the new
chain (the case that used to be skipped: cursor at the old chain's block, deposit below)."""

from __future__ import annotations

from pathlib import Path

import pytest
from substrateinterface import Keypair

from kumulus.backend import billing, chain_identity
from kumulus.backend import settlement_state as state
from kumulus.backend.db import Database, migrate
from kumulus.backend.deposits import DepositWatcher
from kumulus.backend.models import DeveloperWallet
from kumulus.chain.client import ChainClient
from kumulus.chain.devnode import DevNode
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import account
from tests.e2e.agent_process import free_port
from tests.e2e.chain import SPEC, UNIT

pytestmark = pytest.mark.slow


def test_a_restarted_dev_chain_is_not_taken_for_the_old_one(
    dev_chain: DevNode, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    migrate(db.engine)
    alice = Keypair.create_from_uri("//Alice", ss58_format=42)
    deposit = keypair_from_mnemonic(new_mnemonic()).ss58_address
    with db.session() as s:
        dev = account(s, "developer")
        s.add(
            DeveloperWallet(address=alice.ss58_address, account_id=dev.id, linked_at=dev.created_at)
        )
        s.commit()
        dev_id = dev.id

    chain = ChainClient(dev_chain.url)  # the chain followed so far (this session's)
    try:
        watcher = DepositWatcher(db, chain, deposit)
        watcher.scan()
        chain.transfer(alice, deposit, 3 * UNIT)
        assert watcher.scan() == 1
        old_head, genesis = chain.finalized_number(), chain.genesis_hash()
    finally:
        chain.close()

    # The same spec started again: from genesis, same genesis hash, block numbers reused.
    node = DevNode(SPEC, free_port(), tmp_path / "chopsticks.log").start()
    chain = ChainClient(node.url)
    try:
        assert chain.genesis_hash() == genesis and chain.finalized_number() < old_head
        assert DepositWatcher(db, chain, deposit).scan() == 0
        with db.session() as s:
            assert "restarted" in str(state.get(s, state.BLOCKED_CHAIN))
            chain_identity.reset(s, chain_identity.plan_reset(s))
        watcher = DepositWatcher(db, chain, deposit)
        watcher.scan()  # adopts the new chain at its head
        chain.transfer(alice, deposit, 2 * UNIT)  # an early block of the new chain
        assert watcher.scan() == 1
        with db.session() as s:
            assert billing.balance(s, billing.DEVELOPER, dev_id) == 5 * UNIT
    finally:
        chain.close()
        node.stop()
