"""Deposits: a watcher follows finalized blocks and credits each transfer to the platform's
deposit address exactly once.

Exactly once: each transfer is recorded under its (block hash, event index) primary key in the
same database transaction as its ledger credit and the cursor move, so a crash, a restart or
a deliberate re-scan can never credit it twice. Transfers from wallets no developer linked are
recorded but not credited."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, upsert_insert
from kumulus.backend.models import ChainCursor, ChainDeposit, DeveloperWallet
from kumulus.chain.client import ChainClient, Transfer

log = logging.getLogger(__name__)
CURSOR = "deposits"


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
        deposits were credited. The first scan starts at the current finalized block."""
        credited = 0
        head = self._chain.finalized_number()
        with self._db.session() as s:
            last = self.cursor(s)
            if last is None:
                last = head - 1
            for number in range(last + 1, min(head, last + max_blocks) + 1):
                transfers = [
                    t
                    for t in self._chain.transfers(number)
                    if self._chain.same_account(t.dest, self.address)
                ]
                credited += sum(self._record(s, t) for t in transfers)
                self._move_cursor(s, number)
                s.commit()
        return credited

    def rescan_from(self, block_number: int) -> None:
        """Go back: blocks from `block_number` on are processed again (nothing is credited
        twice; transfers missed before, e.g. while the chain URL was wrong, are found)."""
        with self._db.session() as s:
            self._move_cursor(s, block_number - 1)
            s.commit()

    def _move_cursor(self, s: Session, number: int) -> None:
        stmt = upsert_insert(s, ChainCursor).values(name=CURSOR, block_number=number)
        s.execute(
            stmt.on_conflict_do_update(index_elements=["name"], set_={"block_number": number})
        )

    def _record(self, s: Session, transfer: Transfer) -> int:
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
            )
            .on_conflict_do_nothing()
        )
        if inserted.rowcount != 1 or account_id is None:  # type: ignore[attr-defined]
            if account_id is None and inserted.rowcount == 1:  # type: ignore[attr-defined]
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
