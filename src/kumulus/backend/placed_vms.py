"""The VM rows a batch of placements finished, written in one statement.

`vms.place_vms` finishes each placement on the VM's ORM object (its host, prices, state,
converge intent), as the rest of the backend does. Left to the session's flush, those
became one UPDATE per VM (psycopg pipelines them, but each is still parsed, planned and
run alone: 4.3 ms of a 64-VM batch's ~40 ms, bench/scheduler). `write` sends the batch's
rows as one JSON parameter in one UPDATE on PostgreSQL (an executemany on SQLite, where a
statement costs no round trip), then expires the fields written on the objects, so that
the flush at commit has nothing left to write for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from kumulus.backend import ledger
from kumulus.backend.models import VM

# What finishing a placement sets on a VM, and each field's PostgreSQL type.
PLACED_FIELDS = {
    "host_id": "varchar",
    "reserved": "boolean",
    "price_cpu_hour": "bigint",
    "price_memory_gib_hour": "bigint",
    "price_disk_gib_hour": "bigint",
    "actual_state": "varchar",
    "failure_reason": "text",
    "updated_at": "timestamptz",
    "converge_attempts": "integer",
    "converge_after": "timestamptz",
}
_VMS = cast(Table, VM.__table__)
# Field names come from PLACED_FIELDS only; every value is a parameter.
_PG_UPDATE = text(
    "UPDATE vms AS v SET "  # noqa: S608
    + ", ".join(f"{name} = w.{name}" for name in PLACED_FIELDS)
    + " FROM json_to_recordset(CAST(:w AS json)) AS w(id varchar, "
    + ", ".join(f"{name} {kind}" for name, kind in PLACED_FIELDS.items())
    + ") WHERE v.id = w.id"
)
_SQLITE_UPDATE = (
    update(_VMS)
    .where(_VMS.c.id == bindparam("vm_id"))
    .values({name: bindparam(f"v_{name}", type_=_VMS.c[name].type) for name in PLACED_FIELDS})
)


def write(db: Session, vms: Sequence[VM]) -> None:
    """Write PLACED_FIELDS of `vms` as the objects hold them, in the caller's transaction,
    and expire those fields on the objects (the session will not write them again, and
    reads them back from the rows; other changed fields are still flushed as usual). The
    caller holds the locks the placement was decided under."""
    if not vms:
        return
    vms = sorted(vms, key=lambda vm: vm.id)  # rows locked in id order, as the meter job does
    conn = db.connection()
    if db.get_bind().dialect.name == "postgresql":
        rows = [{"id": vm.id, **{name: getattr(vm, name) for name in PLACED_FIELDS}} for vm in vms]
        written = conn.execute(_PG_UPDATE, {"w": ledger.pg_json(rows)}).rowcount
    else:
        params: list[dict[str, Any]] = [
            {"vm_id": vm.id, **{f"v_{name}": getattr(vm, name) for name in PLACED_FIELDS}}
            for vm in vms
        ]
        written = conn.execute(_SQLITE_UPDATE, params).rowcount
    # A row gone since it was read (a refused create's row is deleted without the VM's
    # locks, VMService._place_new) must fail the transaction, as the ORM's own UPDATE did
    # (StaleDataError): committing would keep the host's capacity and the hold of a VM
    # that is not there.
    if written not in (-1, len(vms)):
        raise StaleDataError(f"placing {len(vms)} VM row(s): {written} matched")
    # Written: the objects' changes to these fields are dropped (a flush would write them
    # again, one UPDATE per VM); read again, they come from the row just written.
    fields = list(PLACED_FIELDS)
    for vm in vms:
        db.expire(vm, fields)
