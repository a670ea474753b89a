"""Job `meter`: bring every metered VM's money up to now (backend/billing.py): accrue its
usage against its prepaid hold, post what is due, renew holds, and record a stop for the
running VMs whose hold could not be renewed (the `stops` job has the host carry it out;
no agent is called here).

VMs are settled in chunks, one transaction per chunk that locks all the balances the
chunk touches up front. A chunk that fails for one bad row (an amount that breaks a
ledger rule, a bug) is rolled back and settled again one VM per transaction, so that VM
is logged with its id and skipped and every other VM is still metered. Only a database
that is away fails the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from kumulus.backend import billing
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import VM
from kumulus.config import BackendSettings

log = logging.getLogger(__name__)

CHUNK = 500


@dataclass
class MeterReport:
    metered: int = 0  # VMs settled
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
    with db.session() as s:
        ids = list(
            s.scalars(
                select(VM.id)
                .where(
                    VM.metered_until.is_not(None),
                    VM.actual_state != "deleted",
                    VM.intended_state != "deleted",
                )
                .order_by(VM.id)
            )
        )
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            try:
                _settle_chunk(s, chunk, terms, now, report)
            except (OperationalError, InterfaceError):
                raise  # the database, not a VM: the whole run fails and is retried
            except Exception:
                s.rollback()
                for vm_id in chunk:  # find the bad one; settle the others
                    _settle_one(s, vm_id, terms, now, report)
    return report


def _settle_chunk(
    s: Session, ids: list[str], terms: billing.Terms, now: datetime, report: MeterReport
) -> None:
    vms = list(s.scalars(select(VM).where(VM.id.in_(ids))))
    locked, providers = billing.lock_vms(s, vms, terms.heartbeat_ttl)
    outcomes = [billing.settle(s, vm, terms, now, locked=locked, providers=providers) for vm in vms]
    s.commit()
    for vm, out in zip(vms, outcomes, strict=True):
        _count(vm, out, report)


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
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        s.rollback()
        report.skipped += 1
        log.warning(
            "VM %s: not metered this run, its charge failed: %s", vm_id, billing.failure_reason(exc)
        )


def _count(vm: VM, out: billing.Outcome, report: MeterReport) -> None:
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
