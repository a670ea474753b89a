"""Job `meter`: bring every metered VM's money up to now (backend/billing.py): accrue its
usage against its prepaid hold, post what is due, renew holds, and record a stop for the
running VMs whose hold could not be renewed (the `stops` job has the host carry it out;
no agent is called here).

VMs are settled in chunks, one transaction per chunk that locks all the balances the
chunk touches up front and writes with a constant number of statements: the chunk's ledger
entries, its final balances and its VMs' changed metering fields are collected while
settling and written once each (executemany, which psycopg pipelines), not per VM. A chunk
that fails for one bad row (an amount that breaks a ledger rule, a bug) is rolled back and
settled again one VM per transaction, so that VM is logged with its id and skipped and
every other VM is still metered. Only a database that is away fails the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, text, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from kumulus.backend import billing, ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import VM
from kumulus.config import BackendSettings

log = logging.getLogger(__name__)

CHUNK = 500
# Every VM field `billing.settle` may change (without `to_state`).
METERED_FIELDS = (
    "metered_until",
    "meter_carry",
    "accrued",
    "posted_at",
    "unfunded_since",
    "intended_state",
    "actual_state",
    "failure_reason",
    "updated_at",
    "stop_requested_at",
)
_VMS = cast(Table, VM.__table__)
# PostgreSQL type of each metered field (see _write_metered).
_PG_TYPE = {
    "metered_until": "timestamptz",
    "meter_carry": "bigint",
    "accrued": "numeric",
    "posted_at": "timestamptz",
    "unfunded_since": "timestamptz",
    "intended_state": "varchar",
    "actual_state": "varchar",
    "failure_reason": "text",
    "updated_at": "timestamptz",
    "stop_requested_at": "timestamptz",
}


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
    vms, locked, providers = billing.lock_vm_ids(s, ids, terms.heartbeat_ttl)
    before = [_metered(vm) for vm in vms]
    batch = ledger.PostingBatch()
    outcomes = [
        billing.settle(s, vm, terms, now, locked=locked, providers=providers, batch=batch)
        for vm in vms
    ]
    ledger.flush_batch(s, batch)
    _write_metered(s, vms, before)
    s.commit()
    for vm, out in zip(vms, outcomes, strict=True):
        _count(vm, out, report)


def _metered(vm: VM) -> tuple[Any, ...]:
    return tuple(getattr(vm, name) for name in METERED_FIELDS)


def _write_metered(s: Session, vms: list[VM], before: list[tuple[Any, ...]]) -> None:
    """Write the fields settling changed, as the ORM's flush would (only those, so a
    concurrent change to another field, e.g. a heartbeat's `actual_state`, is not
    overwritten), but in one statement per set of changed fields instead of one UPDATE per
    VM; then tell the session they are written."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    written: list[tuple[VM, tuple[str, ...]]] = []
    for vm, old in zip(vms, before, strict=True):
        changed = tuple(
            name for name, was, now in zip(METERED_FIELDS, old, _metered(vm), strict=True)
            if was != now
        )  # fmt: skip
        if changed:
            row = {f"v_{name}": getattr(vm, name) for name in changed}
            groups.setdefault(changed, []).append({"vm_id": vm.id, **row})
            written.append((vm, changed))
    conn = s.connection()  # not the session's execute: that would flush the VMs first
    postgres = s.get_bind().dialect.name == "postgresql"
    for names, rows in groups.items():
        if postgres:
            # One statement over a JSON parameter (psycopg would otherwise send one per row).
            if "accrued" in names:
                for row in rows:
                    row["v_accrued"] = ledger.planck_text(s, row["v_accrued"])
            # Column names come from METERED_FIELDS only; every value is a parameter.
            sets = ", ".join(f"{n} = w.v_{n}" for n in names)
            columns = ", ".join(f"v_{n} {_PG_TYPE[n]}" for n in names)
            source = f"json_to_recordset(CAST(:w AS json)) AS w(vm_id varchar, {columns})"
            sql = f"UPDATE vms AS v SET {sets} FROM {source} WHERE v.id = w.vm_id"  # noqa: S608
            conn.execute(text(sql), {"w": ledger.pg_json(rows)})
            continue
        conn.execute(
            update(_VMS)
            .where(_VMS.c.id == bindparam("vm_id"))
            .values({name: bindparam(f"v_{name}", type_=_VMS.c[name].type) for name in names}),
            rows,
        )
    # Written: the commit's flush must not write them again (any other change still is).
    for vm, names in written:
        for name in names:
            set_committed_value(vm, name, getattr(vm, name))


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
