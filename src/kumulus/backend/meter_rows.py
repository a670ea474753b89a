"""VMs as plain rows for the meter job: read the columns settling needs (and their hosts)
for a chunk of VMs in one query, settle them with `billing.settle` like ORM VMs, and write
back only the fields settling changed, one statement per set of changed fields.

The ORM costs more than the money logic at 10,000 VMs a pass (instrumented attributes,
identity map, flush bookkeeping); a row is a slotted object with the same attribute names,
so `billing.settle` is the one implementation of the money rules for both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import lru_cache
from operator import attrgetter, ne
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    and_,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from kumulus.backend import billing, vm_field_updates
from kumulus.backend.models import VM, Host

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
_HOSTS = cast(Table, Host.__table__)
# Core statements on the session's connection: no ORM machinery per row.
_OWNERS = select(_VMS.c.id, _VMS.c.account_id, _HOSTS.c.account_id).outerjoin(
    _HOSTS, _HOSTS.c.id == _VMS.c.host_id
)


@dataclass(slots=True, eq=False)
class MeterRow:
    """One VM's metering state, as read (satisfies `billing.Metered`); remembers the
    metered fields as loaded so that `changed` can tell what settling wrote."""

    id: str
    account_id: int
    host_id: str | None
    cpu: float
    memory: int
    disk: int
    price_cpu_hour: int
    price_memory_gib_hour: int
    price_disk_gib_hour: int
    metered_until: datetime | None
    meter_carry: int
    accrued: int
    posted_at: datetime | None
    unfunded_since: datetime | None
    intended_state: str
    actual_state: str
    failure_reason: str | None
    updated_at: datetime
    stop_requested_at: datetime | None
    _loaded: tuple[Any, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._loaded = _metered(self)

    def changed(self) -> tuple[str, ...]:
        """The metered fields that differ from what was loaded."""
        now = _metered(self)
        if now == self._loaded:
            return ()
        return _names(tuple(map(ne, self._loaded, now)))


_metered = attrgetter(*METERED_FIELDS)
_COLUMNS = tuple(f.name for f in fields(MeterRow) if f.init)  # MeterRow's, in its order
_SELECT = select(
    *(_VMS.c[name] for name in _COLUMNS), _HOSTS.c.account_id, _HOSTS.c.last_heartbeat_at
).outerjoin(_HOSTS, _HOSTS.c.id == _VMS.c.host_id)


@lru_cache(maxsize=256)
def _names(mask: tuple[bool, ...]) -> tuple[str, ...]:
    return tuple(name for name, differs in zip(METERED_FIELDS, mask, strict=True) if differs)


def load(
    db: Session, ids: Sequence[str], heartbeat_ttl: float | None
) -> tuple[list[MeterRow], billing.Hosts]:
    """The VMs `ids` that still exist, ordered by id, and their hosts (offline ones only
    when `heartbeat_ttl` is given). Call it after locking their balances, so that what
    another process committed before the lock is what is read."""
    rows: list[MeterRow] = []
    hosts: dict[str, tuple[str, int, datetime | None]] = {}
    width = len(_COLUMNS)
    conn = db.connection()
    for part in id_parts(db, ids):
        for values in conn.execute(_SELECT.where(part)).all():
            row = MeterRow(*values[:width])
            rows.append(row)
            provider, seen = values[width], values[width + 1]
            if row.host_id is not None and provider is not None:
                hosts[row.host_id] = (row.host_id, provider, seen)
    rows.sort(key=lambda row: row.id)
    return rows, billing.hosts_from(hosts.values(), heartbeat_ttl)


def owners(db: Session, ids: Sequence[str]) -> list[tuple[str, int, int | None]]:
    """(VM id, its developer's account id, its host's provider account id or None): what
    the keys of the balances settling may touch are made of (`billing.vm_keys`)."""
    conn = db.connection()
    return [
        (i, a, p) for part in id_parts(db, ids) for i, a, p in conn.execute(_OWNERS.where(part))
    ]


def id_parts(db: Session, ids: Sequence[str]) -> list[ColumnElement[bool]]:
    """`VM.id` among `ids`, as few conditions as the database takes: on PostgreSQL one
    array parameter (`= ANY`: a short statement, parsed once, instead of 500 placeholders),
    on SQLite IN lists of 500 (its parameter limit)."""
    if db.get_bind().dialect.name == "postgresql":
        # The ids' range (in the database's collation) lets it scan the primary key over
        # the chunk instead of the whole table.
        array = bindparam("vm_ids", list(ids), type_=postgresql.ARRAY(String))
        each = func.unnest(array).column_valued("k")
        lo, hi = select(func.min(each)).scalar_subquery(), select(func.max(each)).scalar_subquery()
        return [and_(_VMS.c.id.between(lo, hi), _VMS.c.id == any_(array))]
    return [_VMS.c.id.in_(ids[start : start + 500]) for start in range(0, len(ids), 500)]


def write(db: Session, rows: Sequence[MeterRow]) -> None:
    """Write the fields settling changed (only those, so that a concurrent change to
    another field, e.g. a heartbeat's `actual_state`, is not overwritten), one statement
    per set of changed fields, in the caller's transaction."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        changed = row.changed()
        if changed:
            values = {f"v_{name}": getattr(row, name) for name in changed}
            groups.setdefault(changed, []).append({"vm_id": row.id, **values})
    for names, params in groups.items():
        vm_field_updates.set_fields(db, names, params)
