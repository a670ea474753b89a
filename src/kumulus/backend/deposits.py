"""Deposits: a watcher follows finalized blocks and credits each transfer to the platform's
deposit address exactly once.

Exactly once: each transfer is recorded under its (block hash, event index) primary key in the
same database transaction as its ledger credit, and the cursor moves once the block is done,
so a crash, a restart or a deliberate re-scan can never credit it twice. One transaction per
deposit: each locks its developer's balance once, in the ledger's lock order, so crediting
never deadlocks with metering. Transfers from wallets no developer linked are
recorded but not credited.

The deposit address is its own (not the payout key's; see backend/hot_wallet.py), and the
watcher runs only on the chain the settlement state belongs to (backend/chain_identity.py):
the cursor and each deposit carry that chain's genesis hash, the cursor also its block's
hash."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import chain_identity, ledger
from kumulus.backend import settlement_state as state
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, upsert_insert
from kumulus.backend.models import ChainCursor, ChainDeposit, DeveloperWallet
from kumulus.chain.client import ChainClient, Transfer

log = logging.getLogger(__name__)
CURSOR = chain_identity.DEPOSIT_CURSOR


class DepositWatcher:
    def __init__(self, db: Database, chain: ChainClient, deposit_address: str) -> None:
        self._db = db
        self._chain = chain
        self.address = deposit_address

    def cursor(self, s: Session) -> int | None:
        row = s.get(ChainCursor, CURSOR)
        return None if row is None else row.block_number

    def scan(self, max_blocks: int = 500) -> int:
        """Process finalized blocks after the cursor (at most `max_blocks`); returns how many
        deposits were credited. The first scan starts at the current finalized block.
        Nothing is scanned on a chain that is not the pinned one (chain_identity.verify)."""
        credited = 0
        genesis = chain_identity.verify(self._db, self._chain)
        if genesis is None:
            return 0
        head = self._chain.finalized_number()
        with self._db.session() as s:
            state.put(s, state.CHAIN_HEAD, str(head))
            s.commit()
            last = self.cursor(s)
            if last is None:
                last = head - 1
            for number in range(last + 1, min(head, last + max_blocks) + 1):
                transfers = [
                    t
                    for t in self._chain.transfers(number)
                    if self._chain.same_account(t.dest, self.address)
                ]
                for transfer in transfers:
                    credited += self._record(s, transfer, genesis)
                    s.commit()
                move_cursor(s, number, genesis, self._chain.block_hash(number))
                s.commit()
        return credited

    def rescan_from(self, block_number: int) -> None:
        """Go back: blocks from `block_number` on are processed again (nothing is credited
        twice; transfers missed before, e.g. while the chain URL was wrong, are found)."""
        with self._db.session() as s:
            move_cursor(s, block_number - 1, None, None)
            s.commit()

    def _record(self, s: Session, transfer: Transfer, genesis: str) -> int:
        account_id = s.scalar(
            select(DeveloperWallet.account_id).where(DeveloperWallet.address == transfer.sender)
        )
        inserted = s.execute(
            upsert_insert(s, ChainDeposit)
            .values(
                block_hash=transfer.block_hash,
                event_index=transfer.event_index,
                block_number=transfer.block_number,
                sender=transfer.sender,
                amount=transfer.amount,
                account_id=account_id,
                seen_at=utcnow(),
                genesis_hash=genesis,
            )
            .on_conflict_do_nothing()
            # RETURNING, not rowcount: an ORM INSERT on PostgreSQL (psycopg) reports no
            # rowcount, so deposits there were recorded and never credited.
            .returning(ChainDeposit.block_hash)
        )
        new = inserted.first() is not None
        if not new or account_id is None:
            if account_id is None and new:
                log.info(
                    "deposit of %d from unlinked wallet %s recorded, not credited",
                    transfer.amount,
                    transfer.sender,
                )
            return 0
        txn = ledger.transfer(
            s,
            (ledger.CHAIN, None),
            (ledger.DEVELOPER, account_id),
            transfer.amount,
            "deposit",
            memo=f"block {transfer.block_number} event {transfer.event_index}",
        )
        row = s.get(ChainDeposit, (transfer.block_hash, transfer.event_index))
        assert row is not None
        row.txn_id = txn
        log.info("credited deposit of %d to account %d", transfer.amount, account_id)
        return 1


def move_cursor(s: Session, number: int, genesis: str | None, block_hash: str | None) -> None:
    """Set the deposit cursor to block `number` (no commit). A None genesis keeps the one on
    the cursor; a None block hash means unknown (a re-scan: the chain check then looks at
    the latest deposit instead)."""
    values: dict[str, object] = {"block_number": number, "block_hash": block_hash}
    if genesis is not None:
        values["genesis_hash"] = genesis
    stmt = upsert_insert(s, ChainCursor).values(name=CURSOR, **values)
    s.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))
