"""Job `meter`: charge every metered VM up to now, then stop (never delete) the running VMs
of developers whose balance is used up.

Each VM is charged in its own transaction: a VM whose charge fails (an amount that does not
fit its column, a bug with one row) is rolled back, logged with its id and skipped, and
every other VM is still metered and enforced. Only a database that is away fails the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from kumulus.backend import billing
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import VM
from kumulus.backend.vms import STOPPED_FOR_FUNDS
from kumulus.config import BackendSettings

log = logging.getLogger(__name__)


@dataclass
class MeterReport:
    metered: int = 0  # VMs charged (or found charged by another process)
    charged: int = 0  # planck
    skipped: int = 0  # VMs whose charge failed this run
    stopped_for_funds: int = 0


def meter_and_enforce(db: Database, settings: BackendSettings) -> MeterReport:
    report = MeterReport()
    with db.session() as s:
        ids = list(
            s.scalars(
                select(VM.id).where(VM.metered_until.is_not(None), VM.actual_state != "deleted")
            )
        )
        for vm_id in ids:
            _meter_one(s, vm_id, settings.platform_fee_bps, report)
        if settings.billing_enforced:
            _enforce(s, report)
    return report


def _meter_one(s: Session, vm_id: str, fee_bps: int, report: MeterReport) -> None:
    try:
        vm = s.get(VM, vm_id)
        if vm is None:
            return
        report.charged += billing.meter(s, vm, fee_bps)
        report.metered += 1
    except (OperationalError, InterfaceError):
        raise  # the database, not this VM: the whole run fails and is retried
    except Exception as exc:
        s.rollback()
        report.skipped += 1
        log.warning(
            "VM %s: not metered this run, its charge failed: %s", vm_id, billing.failure_reason(exc)
        )


def _enforce(s: Session, report: MeterReport) -> None:
    """Record a stop for the running VMs of developers whose balance is used up: wanted
    `stopped` (billed as stopped from now on), actual `stopping` until the `stops` job has
    the host confirm it. No agent is called here: one host that never answers must not
    hold up metering for everybody. Each account and each VM has its own error boundary."""
    running = list(
        s.scalars(
            select(VM).where(
                VM.intended_state == "running",
                VM.metered_until.is_not(None),
                VM.actual_state != "deleted",
            )
        )
    )
    broke: set[int] = set()
    for account_id in {vm.account_id for vm in running}:
        try:
            if billing.balance(s, billing.DEVELOPER, account_id) <= 0:
                broke.add(account_id)
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:  # one account's ledger must not stop the others
            s.rollback()
            log.warning("account %s: balance not read: %s", account_id, billing.failure_reason(exc))
    for vm_id in [vm.id for vm in running if vm.account_id in broke]:
        try:
            # Only over a running VM: a stop or delete that raced with this keeps winning.
            marked = s.execute(
                update(VM)
                .where(VM.id == vm_id, VM.intended_state == "running")
                .values(
                    intended_state="stopped",
                    actual_state="stopping",
                    failure_reason=STOPPED_FOR_FUNDS,
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            s.commit()
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            s.rollback()
            log.warning(
                "VM %s: stop for funds not recorded: %s", vm_id, billing.failure_reason(exc)
            )
            continue
        if marked.rowcount == 1:  # type: ignore[attr-defined]
            report.stopped_for_funds += 1
            log.info("VM %s: stopping, its developer's balance is used up", vm_id)
