"""The VM rows a batch of placements finished, written in one statement.

`vms.place_vms` finishes each placement on the VM's ORM object (its host, prices, state,
converge intent), as the rest of the backend does. Left to the session's flush, those
became one UPDATE per VM (psycopg pipelines them, but each is still parsed, planned and
run alone: 4.3 ms of a 64-VM batch's ~40 ms, bench/scheduler). `write` sets them on all
the batch's rows with one statement (`vm_field_updates`, as the meter job writes), then
expires the fields written on the objects, so that the flush at commit has nothing left to
write for them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from kumulus.backend import vm_field_updates
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


def write(db: Session, vms: Sequence[VM]) -> None:
    """Write PLACED_FIELDS of `vms` as the objects hold them, in the caller's transaction,
    and expire those fields on the objects (the session will not write them again, and
    reads them back from the rows; other changed fields are still flushed as usual). The
    caller holds the locks the placement was decided under."""
    if not vms:
        return
    vms = sorted(vms, key=lambda vm: vm.id)  # rows locked in id order, as the meter job does
    rows = [
        {"vm_id": vm.id, **{f"v_{name}": getattr(vm, name) for name in PLACED_FIELDS}} for vm in vms
    ]
    written = vm_field_updates.set_fields(db, PLACED_FIELDS, rows)
    # A row gone since it was read must fail the transaction, as the ORM's own UPDATE did
    # (StaleDataError): committing would keep the host's capacity and the hold of a VM
    # that is not there. (A refused create drops its row under the developer's balance
    # lock, VMService._place_new, so this is the guard behind that lock.)
    if written not in (-1, len(vms)):
        raise StaleDataError(f"placing {len(vms)} VM row(s): {written} matched")
    # Written: the objects' changes to these fields are dropped (a flush would write them
    # again, one UPDATE per VM); read again, they come from the row just written.
    fields = list(PLACED_FIELDS)
    for vm in vms:
        db.expire(vm, fields)
