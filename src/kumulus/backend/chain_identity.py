"""Chain identity: the settlement state belongs to one chain, and settlement runs only on it.

The settlement state is the deposit cursor (how far deposits were credited), the payouts
(reconciled by the payout key's nonces) and the anchors. Each is meaningless on another
chain: a cursor at block 5 skips blocks 1-5 of a new chain, and a nonce of another chain
says nothing about what was paid here. So:

- the chain is named by its genesis hash, pinned in `settlement_state` (`genesis`) and
  written on the cursor, every deposit, every submitted payout and every anchor;
- before each run, the deposits, payouts, anchors and payout-float jobs call `verify`: a
  chain with another genesis, or the pinned genesis but without the block the cursor stands
  on (a development chain restarted from genesis has the same genesis hash and reuses block
  numbers), blocks settlement (`blocked:chain`, logged once) until the chain matches again
  or an operator runs `kumulus backend reset-chain-state`;
- nothing pinned yet (a new backend, or one migrated from before pinning): the chain is
  adopted, and rows written before pinning are marked with its genesis, provided the chain
  still has the blocks those rows name.

`plan_reset` / `reset` are that command: forget the cursor, the pin and the payouts whose
outcome only the old chain knows; keep paid payouts and deposits as history."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from kumulus.backend import settlement_state as state
from kumulus.backend.db import Database
from kumulus.backend.models import Anchor, ChainCursor, ChainDeposit, Payout, SettlementState
from kumulus.chain.client import ChainClient

log = logging.getLogger(__name__)

DEPOSIT_CURSOR = "deposits"


def verify(db: Database, chain: ChainClient) -> str | None:
    """The chain's genesis hash when settlement may run on it; None when it may not (the
    reason is recorded as `blocked:chain` and logged when it first appears). Adopts the
    chain when none is pinned. Raises ChainError when the chain cannot be read."""
    genesis = chain.genesis_hash()
    with db.session() as s:
        pin = s.get(SettlementState, state.GENESIS)
        pinned = None if pin is None else pin.value
        problem = _problem(s, chain, genesis, pin)
        if problem is None and pinned is None:
            adopted = _adopt(s, genesis)
            s.commit()
            if adopted:  # several jobs may adopt at once: one says so
                log.info("settlement pinned to the chain at %s (genesis %s)", chain.url, genesis)
    if problem is not None:
        state.raise_condition(db, state.BLOCKED_CHAIN, problem)
        return None
    state.clear_condition(db, state.BLOCKED_CHAIN)
    return genesis


_RESET = (
    "; deposits, payouts and anchors are stopped until the chain matches again or an "
    "operator runs `kumulus backend reset-chain-state`"
)


def _problem(
    s: Session, chain: ChainClient, genesis: str, pin: SettlementState | None
) -> str | None:
    pinned = None if pin is None else pin.value
    if pinned is not None and pinned != genesis:
        return (
            f"the chain at {chain.url} has genesis {genesis}, but this backend's settlement "
            f"state belongs to the chain with genesis {pinned}{_RESET}"
        )
    # Same genesis (or none pinned): is this still the history we followed?
    head = chain.finalized_number()
    cursor = s.get(ChainCursor, DEPOSIT_CURSOR)
    if cursor is not None and cursor.genesis_hash in (None, genesis):
        if cursor.block_number > head:
            return (
                f"the chain at {chain.url} is at finalized block {head}, behind block "
                f"{cursor.block_number} that the deposit watcher already processed: it was "
                f"restarted from genesis (a development chain?){_RESET}"
            )
        if cursor.block_hash is not None:
            if chain.block_hash(cursor.block_number) != cursor.block_hash:
                return (
                    f"block {cursor.block_number} of the chain at {chain.url} is not the "
                    f"block the deposit watcher processed ({cursor.block_hash}): the chain "
                    f"was restarted or forked{_RESET}"
                )
            return None
    # No block hash on the cursor (before pinning, or after rescan-deposits): the latest
    # deposit names a block too. Only deposits of this pin: after a reset to a chain
    # restarted from the same genesis, the old chain's deposits carry that genesis too.
    ours: ColumnElement[bool] = ChainDeposit.genesis_hash.is_(None)
    if pin is not None:
        ours = (ChainDeposit.genesis_hash == genesis) & (ChainDeposit.seen_at >= pin.since)
    last = s.scalars(
        select(ChainDeposit).where(ours).order_by(ChainDeposit.block_number.desc()).limit(1)
    ).first()
    if last is not None and (
        last.block_number > head or chain.block_hash(last.block_number) != last.block_hash
    ):
        return (
            f"the deposit recorded in block {last.block_number} ({last.block_hash}) is not "
            f"on the chain at {chain.url}: it is another chain or was restarted{_RESET}"
        )
    return None


def _adopt(s: Session, genesis: str) -> bool:
    """Pin `genesis` and mark unmarked rows with it (no commit); True if newly pinned."""
    adopted = state.put(s, state.GENESIS, genesis)
    unmarked = {"genesis_hash": genesis}
    for table in (ChainCursor, ChainDeposit, Anchor):
        s.execute(
            update(table)
            .where(table.genesis_hash.is_(None))
            .values(unmarked)
            .execution_options(synchronize_session=False)
        )
    s.execute(
        update(Payout)
        .where(Payout.genesis_hash.is_(None), Payout.nonce.is_not(None))
        .values(unmarked)
        .execution_options(synchronize_session=False)
    )
    return adopted


@dataclass
class ResetPlan:
    """What `reset` forgets and what it keeps."""

    genesis: str | None  # the pinned chain (None: nothing pinned)
    cursor: int | None  # the deposit cursor's block
    unconfirmed: list[Payout] = field(default_factory=list)  # sent, outcome unknown
    pending: int = 0  # never sent: kept, sent on the chain adopted next
    paid: int = 0  # kept as history
    deposits: int = 0  # kept as history
    blocked: str | None = None  # the current chain-identity block, if any

    def describe(self) -> list[str]:
        chain = f"chain {self.genesis}" if self.genesis else "the chain followed so far"
        lines = [f"This forgets the settlement state of {chain}:"]
        if self.cursor is not None:
            lines.append(
                f"  - the deposit cursor (block {self.cursor}): deposits are then followed "
                "from the new chain's finalized head (earlier blocks: rescan-deposits)"
            )
        lines.append(
            "  - the pinned genesis: the backend adopts the chain it connects to next"
            if self.genesis
            else "  - nothing is pinned yet: the backend adopts the chain it connects to next"
        )
        if self.unconfirmed:
            lines.append(
                f"  - {len(self.unconfirmed)} unconfirmed payout(s), sent on that chain with "
                "an outcome only it knows: marked failed and refunded to the providers' "
                "earnings (they are paid again on the new chain; do this only once you know "
                "they did not land, e.g. the old chain is gone):"
            )
            lines += [
                f"      payout {p.id}: {p.amount} planck to {p.address} (nonce {p.nonce})"
                for p in self.unconfirmed
            ]
        lines.append(
            f"Kept: {self.paid} paid payout(s) and {self.deposits} deposit(s) as history, "
            f"marked with their chain's genesis; {self.pending} pending payout(s), sent on "
            "the new chain."
        )
        if self.blocked:
            lines.append(f"Settlement is stopped now because {self.blocked}.")
        return lines


def plan_reset(s: Session) -> ResetPlan:
    cursor = s.get(ChainCursor, DEPOSIT_CURSOR)
    genesis = state.get(s, state.GENESIS)
    return ResetPlan(
        genesis=genesis,
        cursor=None if cursor is None else cursor.block_number,
        unconfirmed=list(
            s.scalars(select(Payout).where(Payout.status == "submitted").order_by(Payout.id))
        ),
        pending=len(s.scalars(select(Payout.id).where(Payout.status == "pending")).all()),
        paid=len(s.scalars(select(Payout.id).where(Payout.status == "paid")).all()),
        deposits=len(s.scalars(select(ChainDeposit.block_hash)).all()),
        blocked=state.get(s, state.BLOCKED_CHAIN),
    )


def reset(s: Session, plan: ResetPlan) -> None:
    """Forget what `plan` lists (commits): the next `verify` adopts the chain it sees."""
    from kumulus.backend.payouts import fail_payout  # payouts imports this module

    if plan.genesis is not None:
        _adopt(s, plan.genesis)  # history keeps the genesis it happened on
    for payout in plan.unconfirmed:
        s.refresh(payout)
        if payout.status == "submitted":
            fail_payout(s, payout, f"chain reset by an operator; sent on chain {plan.genesis}")
    cursor = s.get(ChainCursor, DEPOSIT_CURSOR)
    if cursor is not None:
        s.delete(cursor)
    for name in (
        state.GENESIS, state.BLOCKED_CHAIN, state.WAITING_FLOAT,
        state.PAYOUT_NONCES_ACCOUNTED, state.RESTORE_SCAN_FROM,
    ):  # fmt: skip
        state.delete(s, name)
    # The nonces given so far are the forgotten chain's, even when the new one has the same
    # genesis (a development chain restarted from its spec): payouts and anchors count
    # only those given after the reset.
    last = s.scalar(select(func.max(Payout.id)))
    if last is not None:
        state.put(s, state.PAYOUTS_BEFORE_RESET, str(last))
    s.execute(update(Anchor).where(Anchor.status == "pending").values(nonce=None))
    s.commit()
    log.warning("settlement state reset by an operator (was pinned to %s)", plan.genesis or "none")
