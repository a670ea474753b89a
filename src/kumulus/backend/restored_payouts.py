"""Payouts after a restore: what the chain paid since the backup is recorded before anything
is sent again.

A backup is a past state. Payouts sent after it was taken are on chain but not in the
restored database: one that was `pending` in the backup would be sent again with a new
nonce, and earnings paid by one created after the backup would be paid out again. So a
restore raises `blocked:restore` (settlement_state), and the payout sender first runs
`reconcile`, which clears it once every nonce of the payout key that the chain used beyond
the database's is accounted for:

- the payout key sends payouts only, so each nonce from the database's next one up to the
  key's nonce on chain is a payout sent after the backup; their transfers are found in the
  blocks after the restored database's last known block (deposit cursor, payout blocks);
- a successful transfer is matched to the oldest `pending` payout to the same address and
  amount, which is marked paid with it; one with no such payout (created after the backup)
  is recorded as a paid payout of the provider whose wallet received it, debiting their
  earnings as the original request did;
- a transfer that failed on chain paid nothing: its nonce is simply used.

Anything it cannot account for (a nonce not found, a transfer to an unknown address, a
provider whose restored earnings cannot cover it) leaves payouts stopped, with the reason,
for an operator."""

from __future__ import annotations

import logging

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from kumulus.backend import ledger
from kumulus.backend import settlement_state as state
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.deposits import CURSOR
from kumulus.backend.models import ChainCursor, Payout, ProviderProfile
from kumulus.chain.client import ChainClient, SignedExtrinsic

log = logging.getLogger(__name__)


def mark_restored(db: Database, what: str) -> None:
    """Stop payouts until `reconcile` has matched them with the chain (after a restore).
    Where to look for the payouts sent since is recorded now, from the restored database,
    before the deposit watcher moves its cursor on."""
    with db.session() as s:
        if state.get(s, state.RESTORE_SCAN_FROM) is None:
            state.put(s, state.RESTORE_SCAN_FROM, str(_scan_from(s)))
            s.commit()
    state.raise_condition(
        db,
        state.BLOCKED_RESTORE,
        f"restored from {what}: payouts wait until those sent after the backup are found on chain",
        logging.WARNING,
    )


def of_this_chain(s: Session, genesis: str | None) -> ColumnElement[bool]:
    """Payouts whose nonce counts on the pinned chain: given a nonce, on this genesis (or
    unmarked, from before pinning), and after the last reset-chain-state (a development
    chain restarted from its spec keeps its genesis and starts its nonces again)."""
    where = and_(
        Payout.nonce.is_not(None),
        or_(Payout.genesis_hash == genesis, Payout.genesis_hash.is_(None)),
    )
    through = state.get(s, state.PAYOUTS_BEFORE_RESET)
    return where if through is None else and_(where, Payout.id > int(through))


def accounted_nonce(s: Session, genesis: str | None) -> int:
    """The payout key's next nonce as far as this database knows: past every nonce it gave
    a payout of this chain and every one a reconcile accounted for."""
    known = s.scalar(select(func.max(Payout.nonce)).where(of_this_chain(s, genesis)))
    accounted = state.get(s, state.PAYOUT_NONCES_ACCOUNTED)
    return max(0 if known is None else int(known) + 1, int(accounted or 0))


def notice_unknown_nonces(
    db: Database, chain: ChainClient, payout_address: str, genesis: str
) -> None:
    """Stop payouts as after a restore (`reconcile` then runs) when the payout key's nonce on
    chain is past every nonce the database accounts for on this chain.

    A database in use never falls behind: a payout's nonce is committed before it is sent.
    So this only happens when the database is older than the chain: a restore whose
    `mark_restored` did not happen (killed in between, PostgreSQL's restore and the mark are
    two transactions), a backend that ran during a restore, or a database copied by other
    means. Without it, the payouts pending in that database would be sent again. The
    deposits job calls it too, before its cursor moves: the cursor then still says where
    the database's view of the chain ends."""
    with db.session() as s:
        expected = accounted_nonce(s, genesis)
        already = state.get(s, state.BLOCKED_RESTORE) is not None
    on_chain = chain.nonce(payout_address)
    if on_chain > expected and not already:
        mark_restored(
            db,
            f"a database that is behind the chain (the payout key's nonce on chain is {on_chain}, "
            f"the database knows nonces below {expected})",
        )


def _scan_from(s: Session) -> int:
    """A block at or before the first one that can hold a payout the database does not know:
    every such payout was submitted after the backup, so after the blocks it had seen."""
    cursor = s.get(ChainCursor, CURSOR)
    seen = [
        cursor.block_number if cursor is not None else None,
        s.scalar(select(func.max(Payout.from_block))),
        s.scalar(select(func.max(Payout.block_number))),
    ]
    return max((int(n) for n in seen if n is not None), default=0)


def reconcile(db: Database, chain: ChainClient, payout_address: str, genesis: str) -> bool:
    """Record the payouts the chain made since the backup; True (and `blocked:restore`
    cleared) when every one is accounted for, False (still blocked, reason recorded) when
    not. Does nothing when no restore is pending."""
    if not state.is_blocked(db, state.BLOCKED_RESTORE):
        return True
    with db.session() as s:
        first = accounted_nonce(s, genesis)
        on_chain = chain.nonce(payout_address)
        wanted = set(range(first, on_chain))
        found: dict[int, SignedExtrinsic] = {}
        head = chain.finalized_number()
        recorded = state.get(s, state.RESTORE_SCAN_FROM)
        number = int(recorded) if recorded is not None else _scan_from(s)
        while wanted - found.keys() and number <= head:
            for ext in chain.extrinsics_by(number, payout_address):
                if ext.nonce in wanted:
                    found[ext.nonce] = ext
            number += 1
        missing = sorted(wanted - found.keys())
        if missing:
            return _still_blocked(
                db, f"nonces {missing} of the payout key were used but not found on chain"
            )
        for nonce in sorted(found):
            problem = _record(s, chain, found[nonce], genesis)
            if problem:
                s.rollback()
                return _still_blocked(db, problem)
        # Failed transfers among them used their nonce too: accounted for, so the next run
        # does not take the database for one behind the chain again.
        state.put(s, state.PAYOUT_NONCES_ACCOUNTED, str(on_chain))
        state.delete(s, state.RESTORE_SCAN_FROM)
        s.commit()
    state.clear_condition(db, state.BLOCKED_RESTORE)
    log.warning("after the restore, %d payout(s) sent since the backup were recorded", len(found))
    return True


def _still_blocked(db: Database, problem: str) -> bool:
    state.raise_condition(
        db, state.BLOCKED_RESTORE, f"payouts after the restore not reconciled: {problem}"
    )
    return False


def _record(s: Session, chain: ChainClient, ext: SignedExtrinsic, genesis: str) -> str | None:
    """Record one transfer of the payout key found on chain (no commit); the problem when
    it cannot be."""
    if not ext.success:
        return None  # nothing was paid; a pending payout gets a later nonce
    if ext.dest is None or ext.amount is None:
        return f"nonce {ext.nonce} of the payout key is not a transfer"
    now = utcnow()
    for payout in s.scalars(
        select(Payout).where(Payout.status == "pending", Payout.amount == ext.amount)
    ).all():
        if chain.same_account(payout.address, ext.dest):
            payout.status, payout.nonce, payout.genesis_hash = "paid", ext.nonce, genesis
            payout.extrinsic_hash, payout.block_number = ext.extrinsic_hash, ext.block_number
            payout.from_block, payout.submitted_at, payout.updated_at = (
                ext.block_number,
                now,
                now,
            )
            return None
    account_id = _provider_of(s, chain, ext.dest)
    if account_id is None:
        return f"nonce {ext.nonce} paid {ext.dest}, which is no provider's wallet"
    try:
        txn = ledger.transfer(
            s,
            (ledger.PROVIDER, account_id),
            (ledger.CHAIN, None),
            ext.amount,
            "payout",
            memo=f"payout to {ext.dest} (found on chain after a restore)",
        )
    except ledger.LedgerError as exc:
        return f"nonce {ext.nonce} paid provider {account_id} more than it earned: {exc}"
    s.add(
        Payout(
            account_id=account_id,
            address=ext.dest,
            amount=ext.amount,
            status="paid",
            nonce=ext.nonce,
            from_block=ext.block_number,
            extrinsic_hash=ext.extrinsic_hash,
            block_number=ext.block_number,
            txn_id=txn,
            genesis_hash=genesis,
            created_at=now,
            updated_at=now,
            submitted_at=now,
        )
    )
    s.flush()
    return None


def _provider_of(s: Session, chain: ChainClient, address: str) -> int | None:
    """The provider whose current or earlier payout wallet `address` is."""
    candidates: list[tuple[int, str | None]] = [
        (int(a), w)
        for a, w in s.execute(select(ProviderProfile.account_id, ProviderProfile.wallet_address))
    ]
    candidates += [
        (int(a), w) for a, w in s.execute(select(Payout.account_id, Payout.address).distinct())
    ]
    for account_id, wallet in candidates:
        if wallet and chain.same_account(wallet, address):
            return int(account_id)
    return None
