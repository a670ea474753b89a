"""What a VM has cost its developer so far: the usage posted to the ledger from its holds,
plus what accrued on the hold since the last posting, plus the seconds not metered yet
(the meter job settles every few seconds; a view between two runs would otherwise lag)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import billing
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import VM, LedgerEntry

# Bounds the IN list of one query (SQLite's variable limit is 32,766; lists are pages).
_CHUNK = 500


def posted_usage(db: Session, vms: Sequence[VM]) -> dict[str, int]:
    """Planck of usage posted to the ledger for each VM (by id; 0 when none). One query
    per 500 VMs. Sums in Python: amounts are decimal text on SQLite (see ledger.py)."""
    posted = {vm.id: 0 for vm in vms}
    accounts = {vm.account_id for vm in vms}
    ids = list(posted)
    for start in range(0, len(ids), _CHUNK):
        rows = db.execute(
            select(LedgerEntry.vm_id, LedgerEntry.amount).where(
                LedgerEntry.account_type.in_(billing.HOLD_ACCOUNTS),
                LedgerEntry.account_id.in_(accounts),
                LedgerEntry.kind == "usage",
                LedgerEntry.vm_id.in_(ids[start : start + _CHUNK]),
            )
        )
        for vm_id, amount in rows:
            posted[str(vm_id)] -= int(amount)  # usage leaves the hold: negative legs
    return posted


def cost_so_far(vm: VM, posted: int, host_offline: bool, now: datetime | None = None) -> int:
    """Planck the VM has cost up to `now`: `posted` (posted_usage), its accrued usage, and
    the time since it was last metered at the rate the meter job will charge for it."""
    cost = posted + vm.accrued
    if vm.metered_until is not None and vm.host_id is not None:
        ms = int(((now or utcnow()) - aware(vm.metered_until)).total_seconds() * 1000)
        if ms > 0:
            rate = billing.rate_of(vm, host_offline)
            cost += (rate * ms + vm.meter_carry) // billing.MS_PER_HOUR
    return max(cost, 0)
