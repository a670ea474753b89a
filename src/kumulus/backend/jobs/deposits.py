"""Job `deposits`: credit new deposits found on chain (one process at a time scans)."""

from __future__ import annotations

from kumulus.backend import chain_identity, restored_payouts
from kumulus.backend.db import Database
from kumulus.backend.deposits import DepositWatcher
from kumulus.chain.client import ChainClient


def scan(watcher: DepositWatcher, db: Database, chain: ChainClient, payout_address: str) -> int:
    """Credit new deposits. First, while the cursor still marks where this database's view
    of the chain ends, a database behind the chain is marked as restored (the payout
    sender then looks for the payouts it does not know from there)."""
    genesis = chain_identity.verify(db, chain)
    if genesis is not None:
        restored_payouts.notice_unknown_nonces(db, chain, payout_address, genesis)
    return watcher.scan()
