"""Settlement state shared by every backend process (table `settlement_state`).

Three kinds of rows:
- the pinned chain: `genesis` holds the genesis hash the settlement state belongs to;
- `check:ledger`: how many violations the last ledger check found (breaker.py; the
  `kumulus_ledger_violations` metric); `chain:head`: the finalized block the deposits job
  last saw (the `kumulus_chain_head_lag_blocks` metric);
- conditions: `blocked:<what>` stops settlement (deposits and payouts for `chain`, payouts
  for `breaker`), `waiting:<what>` is a warning (the payout float, the daily cap). A row
  present is a condition in force; its value says why, for operators.

`raise_condition` / `clear_condition` log only when the state changes (in this database,
whichever process notices first), so a condition that lasts is logged once, not on every
run of the job that checks it."""

from __future__ import annotations

import logging

from sqlalchemy import delete as sql_delete
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, upsert_insert
from kumulus.backend.models import SettlementState

log = logging.getLogger(__name__)

GENESIS = "genesis"
BLOCKED_CHAIN = "blocked:chain"
BLOCKED_BREAKER = "blocked:breaker"
BLOCKED_RESTORE = "blocked:restore"  # restored from a backup: payouts wait (restored_payouts)
WAITING_FLOAT = "waiting:float"
WAITING_CAP = "waiting:cap"
LEDGER_VIOLATIONS = "check:ledger"
CHAIN_HEAD = "chain:head"  # the finalized block the deposits job last saw (head lag metric)
# Facts of restored_payouts: the payout key's nonces below this are accounted for (a
# reconcile after a restore found them on chain, failed transfers included); the block a
# pending reconcile looks for payouts from (recorded with the restore's mark, before the
# deposit watcher moves its cursor); the last payout id before a reset-chain-state (the
# nonces of payouts up to it belong to a forgotten chain, which may have had the same
# genesis: a restarted development chain).
PAYOUT_NONCES_ACCOUNTED = "payouts:nonces-accounted"
RESTORE_SCAN_FROM = "restore:scan-from"
PAYOUTS_BEFORE_RESET = "reset:payouts-through"

# What the public sees (/healthz): stable codes, no details (those are in the log and in
# `kumulus backend settlement`).
CODES = {
    BLOCKED_CHAIN: "chain_identity",
    BLOCKED_BREAKER: "circuit_breaker",
    BLOCKED_RESTORE: "restored_backup",
    WAITING_FLOAT: "payout_float_low",
    WAITING_CAP: "payout_daily_cap",
}


def get(s: Session, name: str) -> str | None:
    row = s.get(SettlementState, name)
    return None if row is None else row.value


def put(s: Session, name: str, value: str) -> bool:
    """Set `name` to `value` (no commit); True if that changed anything. Safe when several
    processes set the same name at once (an upsert, not read-then-insert)."""
    inserted = s.execute(
        upsert_insert(s, SettlementState)
        .values(name=name, value=value, since=utcnow())
        .on_conflict_do_nothing()
        .returning(SettlementState.name)
    ).first()
    if inserted is not None:
        return True
    changed = s.execute(
        update(SettlementState)
        .where(SettlementState.name == name, SettlementState.value != value)
        .values(value=value)
        .returning(SettlementState.name)
        .execution_options(synchronize_session=False)
    ).first()
    return changed is not None


def delete(s: Session, name: str) -> bool:
    """Remove `name` (no commit); True if it was there."""
    gone = s.execute(
        sql_delete(SettlementState)
        .where(SettlementState.name == name)
        .returning(SettlementState.name)
        .execution_options(synchronize_session=False)
    ).first()
    return gone is not None


def all_states(s: Session) -> dict[str, str]:
    return {r.name: r.value for r in s.scalars(select(SettlementState))}


def conditions(s: Session) -> dict[str, str]:
    """The blocked / waiting conditions in force, by name, with their reasons."""
    return {k: v for k, v in all_states(s).items() if k in CODES}


def public_codes(s: Session) -> list[str]:
    return sorted(CODES[k] for k in conditions(s))


# What the consoles tell users about a condition (without the operator's details).
_BANNERS = {
    BLOCKED_CHAIN: (
        "Deposits and payouts are paused: the platform's chain is not the one its records "
        "belong to. Nothing is lost; they resume once the operator resolves it."
    ),
    BLOCKED_BREAKER: (
        "Payouts are paused: the platform's ledger check failed and its circuit breaker "
        "stopped all payouts. Your earnings stay; they are paid once it is resolved."
    ),
    BLOCKED_RESTORE: (
        "Payouts are paused while the platform checks its restored records against the "
        "chain. Your earnings stay; payouts resume once that is done."
    ),
    WAITING_CAP: (
        "Payouts are delayed: the platform's daily payout limit is reached; waiting payouts "
        "are sent as the limit frees up."
    ),
}


def banners(s: Session, role: str) -> list[str]:
    """Messages for the consoles of `role` (developer: deposits; provider: payouts)."""
    shown = [BLOCKED_CHAIN]
    if role != "developer":
        shown += [BLOCKED_BREAKER, BLOCKED_RESTORE, WAITING_CAP]
    found = conditions(s)
    return [_BANNERS[name] for name in shown if name in found]


def raise_condition(db: Database, name: str, reason: str, level: int = logging.ERROR) -> None:
    """Record that `name` is in force because of `reason`; logged when new or changed."""
    with db.session() as s:
        changed = put(s, name, reason)
        s.commit()
    if changed:
        what = "settlement STOPPED" if name.startswith("blocked:") else "settlement waiting"
        log.log(level, "%s (%s): %s", what, name, reason)


def clear_condition(db: Database, name: str) -> None:
    """`name` no longer holds; logged when it did."""
    with db.session() as s:
        changed = delete(s, name)
        s.commit()
    if changed:
        log.warning("settlement condition %s cleared: settlement resumes", name)


def is_blocked(db: Database, name: str) -> bool:
    with db.session() as s:
        return get(s, name) is not None
