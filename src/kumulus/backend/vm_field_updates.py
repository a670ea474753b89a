"""Setting chosen fields on many VM rows with one statement: what the meter job
(`meter_rows.write`) and the placer (`placed_vms.write`) write back after working on a
batch of VMs in memory.

On PostgreSQL the rows go as one JSON parameter to one UPDATE ... FROM json_to_recordset
(psycopg would otherwise send, parse and plan one UPDATE per row); on SQLite, where a
statement costs no round trip, as an executemany."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, TextClause, Update, bindparam, text, update
from sqlalchemy.orm import Session

from kumulus.backend import ledger
from kumulus.backend.models import VM

# The PostgreSQL type of every field that can be set here (the JSON rows are typed by it).
PG_TYPES = {
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
    "host_id": "varchar",
    "reserved": "boolean",
    "price_cpu_hour": "bigint",
    "price_memory_gib_hour": "bigint",
    "price_disk_gib_hour": "bigint",
    "converge_attempts": "integer",
    "converge_after": "timestamptz",
}
_VMS = cast(Table, VM.__table__)


@lru_cache(maxsize=64)
def _pg_statement(names: tuple[str, ...]) -> TextClause:
    # Field names come from PG_TYPES only; every value is a parameter.
    sets = ", ".join(f"{n} = w.v_{n}" for n in names)
    columns = ", ".join(f"v_{n} {PG_TYPES[n]}" for n in names)
    source = f"json_to_recordset(CAST(:w AS json)) AS w(vm_id varchar, {columns})"
    return text(f"UPDATE vms AS v SET {sets} FROM {source} WHERE v.id = w.vm_id")  # noqa: S608


@lru_cache(maxsize=64)
def _sqlite_statement(names: tuple[str, ...]) -> Update:
    return (
        update(_VMS)
        .where(_VMS.c.id == bindparam("vm_id"))
        .values({n: bindparam(f"v_{n}", type_=_VMS.c[n].type) for n in names})
    )


def set_fields(db: Session, names: tuple[str, ...], rows: Sequence[dict[str, Any]]) -> int:
    """Set the fields `names` (keys of PG_TYPES) on the VM rows `rows`, each
    `{"vm_id": id, "v_<name>": value, ...}`, in the caller's transaction. Returns how many
    rows matched (-1 when the driver cannot tell)."""
    if not rows:
        return 0
    unknown = [n for n in names if n not in PG_TYPES]
    if unknown:
        raise ValueError(f"not a field set here: {unknown}")
    conn = db.connection()
    if db.get_bind().dialect.name != "postgresql":
        return int(conn.execute(_sqlite_statement(names), list(rows)).rowcount)
    if "accrued" in names:  # exact decimal text: a JSON number would go through a float
        rows = [{**r, "v_accrued": ledger.planck_text(r["v_accrued"])} for r in rows]
    return int(conn.execute(_pg_statement(names), {"w": ledger.pg_json(list(rows))}).rowcount)
