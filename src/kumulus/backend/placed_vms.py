"""The VMs a batch of placements works on, as plain rows: read in one query, finished in
memory (`vms.place_vms`), and the fields a placement sets written back in one statement.

At thousands of placements a second the ORM cost more than the placement's logic: loading
a batch's VMs as ORM objects, setting ten instrumented attributes on each, then expiring
them so that the session would not write them again (one UPDATE per VM) was about a
quarter of the placer's Python time (bench/scheduler). A row is a slotted object with the
VM's attribute names, so the billing code that takes the hold (`billing.take_hold`) and
the converge bookkeeping (`converge.mark_intent`) work on it as on an ORM VM, as the meter
job's rows do (backend/meter_rows.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from kumulus.backend import vm_field_updates
from kumulus.backend.db import driver_cursor
from kumulus.backend.meter_rows import id_parts
from kumulus.backend.models import VM

# What finishing a placement sets on a VM.
PLACED_FIELDS = (
    "host_id",
    "reserved",
    "price_cpu_hour",
    "price_memory_gib_hour",
    "price_disk_gib_hour",
    "actual_state",
    "failure_reason",
    "updated_at",
    "converge_attempts",
    "converge_after",
)


@dataclass(slots=True, eq=False)
class PlacingVM:
    """One VM as a placement reads it: what choosing its host, taking its hold
    (`billing.Metered`) and recording its placement need."""

    id: str
    account_id: int
    host_id: str | None
    reserved: bool
    cpu: float
    memory: int
    disk: int
    region: str
    max_price_hour: int | None
    allow_weak_isolation: bool
    price_cpu_hour: int
    price_memory_gib_hour: int
    price_disk_gib_hour: int
    intended_state: str
    actual_state: str
    failure_reason: str | None
    updated_at: datetime
    stop_requested_at: datetime | None
    metered_until: datetime | None
    meter_carry: int
    accrued: int
    posted_at: datetime | None
    unfunded_since: datetime | None
    converge_attempts: int
    converge_after: datetime | None


_VMS = cast(Table, VM.__table__)
_SELECT = select(*(_VMS.c[f.name] for f in fields(PlacingVM)))


# PostgreSQL: on the driver's cursor (db.driver_cursor), the ids as one array whose range
# makes it a scan of the primary key's range (as meter_rows.id_parts builds it).
_NAMES = [f.name for f in fields(PlacingVM)]
_PG_SELECT = (
    f"SELECT {', '.join(_NAMES)} FROM vms "  # noqa: S608 (column names from PlacingVM)
    "WHERE id BETWEEN (SELECT min(k) FROM unnest(CAST(%(ids)s AS varchar[])) AS k) "
    "AND (SELECT max(k) FROM unnest(CAST(%(ids)s AS varchar[])) AS k) "
    "AND id = ANY(CAST(%(ids)s AS varchar[]))"
)


def load(db: Session, ids: Sequence[str]) -> dict[str, PlacingVM]:
    """The VMs `ids` that exist, by id, in the caller's transaction. Read after locking
    their balances: what another transaction committed before the lock is what is read."""
    if db.get_bind().dialect.name == "postgresql":
        with driver_cursor(db) as cursor:
            cursor.execute(_PG_SELECT, {"ids": list(ids)})
            rows = cursor.fetchall()
        loaded = {}
        for values in rows:
            vm = PlacingVM(*values)
            vm.accrued = int(vm.accrued)  # NUMERIC: the driver gives a Decimal
            loaded[vm.id] = vm
        return loaded
    conn = db.connection()
    return {
        values[0]: PlacingVM(*values)
        for part in id_parts(db, ids)
        for values in conn.execute(_SELECT.where(part)).all()
    }


def write(db: Session, vms: Sequence[PlacingVM]) -> None:
    """Write PLACED_FIELDS of `vms` as the rows hold them, in the caller's transaction,
    which holds the locks the placements were decided under. The session's ORM objects of
    these VMs, if it has any, have those fields expired: read again, they come from the
    rows just written (and a flush will not write their old values back)."""
    if not vms:
        return
    vms = sorted(vms, key=lambda vm: vm.id)  # rows locked in id order, as the meter job does
    rows = [
        {"vm_id": vm.id, **{f"v_{name}": getattr(vm, name) for name in PLACED_FIELDS}} for vm in vms
    ]
    written = vm_field_updates.set_fields(db, PLACED_FIELDS, rows)
    # A row gone since it was read must fail the transaction, as the ORM's own UPDATE
    # would (StaleDataError): committing would keep the host's capacity and the hold of a
    # VM that is not there. (A refused create drops its row under the developer's balance
    # lock, VMService._place_new, so this is the guard behind that lock.)
    if written not in (-1, len(vms)):
        raise StaleDataError(f"placing {len(vms)} VM row(s): {written} matched")
    if not db.identity_map:  # the placer's own session: no ORM object to expire
        return
    names = list(PLACED_FIELDS)
    for vm in vms:
        loaded = db.identity_map.get(db.identity_key(VM, vm.id))
        if loaded is not None:
            db.expire(loaded, names)
