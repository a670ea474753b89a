"""The platform's keys on chain: a deposit address and a payout key holding a float.

Deposits land on the deposit address, never on the payout key: the key that signs payouts
holds only a float (`payout_float` tokens), so a leaked payout key, or a bug that sends too
much, can lose the float and no more (and at most `payout_daily_cap` per day, see
payouts.py). The deposit address is either a key the backend holds (`deposit_key_file`, made
on first start) or an operator's cold address (`deposit_address`), whose key never touches
the backend.

`top_up` (job `payout-float`) brings the payout key back to the float from the deposit key;
with a cold deposit address it only says how much is missing (`waiting:float`, a warning in
the log and /healthz) for the operator to send. Nothing moves on a chain other than the
pinned one or while the circuit breaker is tripped."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from substrateinterface import Keypair

from kumulus.backend import backend_keys, breaker, chain_identity
from kumulus.backend import settlement_state as state
from kumulus.backend.db import Database
from kumulus.chain.client import ChainClient
from kumulus.config import BackendSettings
from kumulus.core.jobs import check_lease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepositSide:
    """Where deposits land; `key` is None for a cold address."""

    address: str
    key: Keypair | None


def deposit_side(db: Database, settings: BackendSettings) -> DepositSide:
    """The cold `deposit_address` when set, else the deposit key (made on the first start
    of a new database); either is checked against the database's (backend_keys.py)."""
    if settings.deposit_address:
        address = backend_keys.address(db, backend_keys.DEPOSIT, settings.deposit_address)
        return DepositSide(address, None)
    assert settings.deposit_key_file is not None
    key = backend_keys.key(db, backend_keys.DEPOSIT, settings.deposit_key_file)
    return DepositSide(key.ss58_address, key)


def top_up(
    db: Database, chain: ChainClient, payout_address: str, deposit: DepositSide, target: int
) -> int:
    """Bring the payout key's free balance up to `target` planck from the deposit key;
    returns how much was sent (0 when nothing was needed or possible)."""
    if chain_identity.verify(db, chain) is None or breaker.tripped(db):
        return 0
    have = chain.free_balance(payout_address)
    if have >= target:
        state.clear_condition(db, state.WAITING_FLOAT)
        return 0
    need = target - have
    if deposit.key is None:
        state.raise_condition(
            db,
            state.WAITING_FLOAT,
            f"the payout key {payout_address} holds {have} planck, below its float of "
            f"{target}: send {need} planck to it from the cold deposit address "
            f"{deposit.address}",
            logging.WARNING,
        )
        return 0
    # transfer_keep_alive leaves the deposit account alive: keep the existential deposit
    # and (twice, for safety) the fee back.
    free = chain.free_balance(deposit.address)
    keep = chain.existential_deposit() + 2 * chain.transfer_fee(deposit.key, payout_address, need)
    amount = min(need, free - keep)
    if amount <= 0:
        state.raise_condition(
            db,
            state.WAITING_FLOAT,
            f"the payout key {payout_address} holds {have} planck, below its float of "
            f"{target}, and the deposit address {deposit.address} has nothing to spare",
            logging.WARNING,
        )
        return 0
    check_lease(before_effect=True)  # the deposit key's nonces: one sender at a time
    chain.transfer(deposit.key, payout_address, amount)
    log.info("payout float topped up with %d planck from the deposit key", amount)
    if amount < need:
        state.raise_condition(
            db,
            state.WAITING_FLOAT,
            f"the payout key {payout_address} got {amount} of the {need} planck it misses "
            f"to its float of {target}: the deposit address holds no more",
            logging.WARNING,
        )
    else:
        state.clear_condition(db, state.WAITING_FLOAT)
    return amount
