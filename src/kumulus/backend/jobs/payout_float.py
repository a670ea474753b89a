"""Job `payout-float`: keep the payout key at its float, topped up from the deposit key
(one process at a time: the deposit key's nonces come from one sender). With a cold deposit
address it only records how much the operator must send (backend/hot_wallet.py)."""

from __future__ import annotations

from kumulus.backend import hot_wallet
from kumulus.backend.db import Database
from kumulus.backend.hot_wallet import DepositSide
from kumulus.chain.client import ChainClient
from kumulus.config import BackendSettings

NAME = "payout-float"


def top_up(
    db: Database,
    settings: BackendSettings,
    chain: ChainClient,
    payout_address: str,
    deposit: DepositSide,
) -> int:
    """Planck sent to the payout key this run."""
    return hot_wallet.top_up(db, chain, payout_address, deposit, settings.payout_float_planck)
