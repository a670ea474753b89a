"""Job `meter`: bring every metered VM's money up to now (backend/billing.py): accrue its
usage against its prepaid hold, post what is due, renew holds, and record a stop for the
running VMs whose hold could not be renewed (the `stops` job has the host carry it out;
no agent is called here).

VMs are settled in chunks of 500, as plain rows (backend/meter_rows.py) by
`billing.settle`, each chunk in two steps:

1. One transaction that locks only the chunk's hold balances, reads the VMs and settles
   those that only accrue usage (the common case: nothing is due to be posted and the hold
   covers the interval), writing their changed fields in one statement. A VM whose
   settlement would touch any other balance (a posting, a top-up, a stop for funds)
   raises `ledger.NotLockedError` before anything is written and is left for step 2.
2. The VMs left over, gathered across chunks, in transactions that lock every balance
   they may touch up front; the chunk's ledger entries, final balances and VM fields are
   collected while settling and written once each, not per VM.

A step-2 chunk that fails for one bad row (an amount that breaks a ledger rule, a bug) is
rolled back and settled again one VM per transaction, so that VM is logged with its id and
skipped and every other VM is still metered. Only a database that is away fails the
run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from kumulus.backend import billing, ledger, meter_rows
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.meter_rows import METERED_FIELDS
from kumulus.backend.models import VM
from kumulus.config import BackendSettings
from kumulus.core.jobs import LeaseLostError

log = logging.getLogger(__name__)

CHUNK = 500
_METERED_IDS = (
    select(VM.id)
    .where(
        VM.metered_until.is_not(None), VM.actual_state != "deleted", VM.intended_state != "deleted"
    )
    .order_by(VM.id)
)
__all__ = ["CHUNK", "METERED_FIELDS", "MeterReport", "meter_and_enforce"]


@dataclass
class MeterReport:
    metered: int = 0  # VMs settled
    accrued_only: int = 0  # of which settled on their hold locks alone (step 1)
    charged: int = 0  # planck accrued
    posted: int = 0  # VMs whose usage was posted to the ledger
    skipped: int = 0  # VMs whose settlement failed this run
    stopped_for_funds: int = 0
    unfunded: int = 0  # stopped VMs whose disk is no longer paid for
    expired: int = 0  # unfunded past the grace period: being deleted


def meter_and_enforce(db: Database, settings: BackendSettings) -> MeterReport:
    report = MeterReport()
    terms = billing.terms_of(settings)
    now = utcnow()
    # One connection for the whole pass: a session that returned it to the pool after
    # each chunk's commit would check it out (and ping it) again for the next. Only the
    # session uses it, so its transactions are the session's own: its commits commit.
    with db.engine.connect() as conn, db.sessions(bind=conn) as s:
        ids = list(s.connection().scalars(_METERED_IDS).all())
        meter_ids(s, ids, terms, now, report)
    return report


def meter_ids(
    s: Session, ids: list[str], terms: billing.Terms, now: datetime, report: MeterReport
) -> None:
    """Settle the VMs `ids` (in id order), chunk by chunk: first on their hold locks
    alone; those that need more (a posting, a top-up) then in chunks on all their locks.

    While most VMs of the last chunk needed more (a wave of renewals), chunks skip the
    first step, which would only lock and read them to find that out."""
    rest: list[str] = []
    holds_first = True
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        if holds_first:
            try:
                left = _accrue_chunk(s, chunk, terms, now, report)
            except (OperationalError, InterfaceError, LeaseLostError):
                raise  # the database or the lease, not a VM: the whole run fails
            except Exception:
                s.rollback()
                left = chunk  # settled in full below, where a bad VM is found and skipped
            holds_first = len(left) * 2 <= len(chunk)
            rest += left
        else:
            rest += chunk
        while len(rest) >= CHUNK:
            holds_first = _settle_or_split(s, rest[:CHUNK], terms, now, report, holds_first)
            rest = rest[CHUNK:]
    if rest:
        _settle_or_split(s, rest, terms, now, report, holds_first)


def _accrue_chunk(
    s: Session, ids: list[str], terms: billing.Terms, now: datetime, report: MeterReport
) -> list[str]:
    """Settle the VMs that only accrue usage, in one transaction that locks nothing but
    the chunk's hold balances; returns the ids of the others (settling them needs a
    balance not locked here: a posting is due, the hold needs topping up), untouched.

    The lock order is kept (these are a subset of the keys, in the same sorted order) and
    so is the rule that settles of one VM serialise on its hold: accrual moves no money,
    it is bounded by the hold, which nobody can change while it is locked here."""
    locked = ledger.lock_existing(s, billing.HOLD_ACCOUNTS, ids)
    rows, hosts = meter_rows.load(s, ids, terms.heartbeat_ttl)
    batch = ledger.PostingBatch()
    done: list[tuple[meter_rows.MeterRow, billing.Outcome]] = []
    rest: list[str] = []
    for row in rows:
        try:
            out = billing.settle(s, row, terms, now, locked=locked, providers=hosts, batch=batch)
        except ledger.NotLockedError:
            rest.append(row.id)  # what it changed on the row is dropped with the row
            continue
        done.append((row, out))
    if batch.entries or batch.balances:  # every posting touches an account not locked here
        raise ledger.LedgerError("a posting on hold locks alone")
    meter_rows.write(s, [row for row, _ in done])
    s.commit()
    for row, out in done:
        _count(row, out, report)
    report.accrued_only += len(done)
    return rest


def _settle_or_split(
    s: Session,
    ids: list[str],
    terms: billing.Terms,
    now: datetime,
    report: MeterReport,
    holds_first: bool,
) -> bool:
    """Settle the VMs in one transaction, or one by one if that fails. Returns whether
    the next chunk should try its hold locks first: most of these posted nothing (or
    `holds_first` when that is not known)."""
    try:
        quiet = _settle_chunk(s, ids, terms, now, report)
    except (OperationalError, InterfaceError, LeaseLostError):
        raise
    except Exception:
        s.rollback()
        for vm_id in ids:  # find the bad one; settle the others
            _settle_one(s, vm_id, terms, now, report)
        return holds_first
    return quiet * 2 > len(ids)


def _settle_chunk(
    s: Session, ids: list[str], terms: billing.Terms, now: datetime, report: MeterReport
) -> int:
    """Settle the VMs in one transaction that locks every balance they may touch; returns
    how many of them posted nothing."""
    keys = [k for i, dev, prov in meter_rows.owners(s, ids) for k in billing.vm_keys(i, dev, prov)]
    locked = ledger.lock(s, keys)
    rows, hosts = meter_rows.load(s, ids, terms.heartbeat_ttl)
    batch = ledger.PostingBatch()
    outcomes = [
        billing.settle(s, row, terms, now, locked=locked, providers=hosts, batch=batch)
        for row in rows
    ]
    quiet = len(rows) - len({entry["vm_id"] for entry in batch.entries})
    ledger.flush_batch(s, batch)
    meter_rows.write(s, rows)
    s.commit()
    for row, out in zip(rows, outcomes, strict=True):
        _count(row, out, report)
    return quiet


def _settle_one(
    s: Session, vm_id: str, terms: billing.Terms, now: datetime, report: MeterReport
) -> None:
    try:
        vm = s.get(VM, vm_id)
        if vm is None:
            return
        out = billing.settle(s, vm, terms, now)
        s.commit()
        _count(vm, out, report)
    except (OperationalError, InterfaceError, LeaseLostError):
        raise
    except Exception as exc:
        s.rollback()
        report.skipped += 1
        log.warning(
            "VM %s: not metered this run, its charge failed: %s", vm_id, billing.failure_reason(exc)
        )


def _count(vm: billing.Metered, out: billing.Outcome, report: MeterReport) -> None:
    report.metered += 1
    report.charged += out.charged
    report.posted += int(out.posted)
    report.unfunded += int(out.unfunded)
    if out.stopped_for_funds:
        report.stopped_for_funds += 1
        log.info("VM %s: stopping, its prepaid hold could not be renewed", vm.id)
    if out.expired:
        report.expired += 1
        log.info("VM %s: deleting, its disk went unpaid for the whole grace period", vm.id)
