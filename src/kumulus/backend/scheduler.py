"""Placement: choose an online host that fits, and reserve its capacity atomically.

A placement is one statement: an UPDATE of the best fitting host, chosen by a sub-select
that walks the (reputation tier, load) index, guarded again by the capacity condition and
checked through RETURNING. On PostgreSQL the sub-select takes the row lock with SKIP LOCKED,
so concurrent placements pick different hosts instead of queueing on one, and never wait
for a lock: a plain FOR UPDATE under ORDER BY ... LIMIT keeps the locks of rows that failed
their re-check, so two placements could each hold the row the other wants (a deadlock, seen
in CI). When every fitting host is held, the placement backs off and tries again. SQLite runs
one writer at a time. Either way no host is ever overcommitted, with any number of backend
processes, and no lock is held while talking to agents."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import BigInteger, DateTime, Float, Select, String, bindparam, select, text
from sqlalchemy.orm import Session

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Host
from kumulus.core.money import GIB, hourly_price
from kumulus.core.sizes import format_size

# PostgreSQL: how long to keep trying while fitting hosts exist but others hold them; each
# holder keeps its lock for one statement and a commit, so this is generous.
_RETRY_FOR = 5.0
_BACKOFF_MAX = 0.05


@dataclass(frozen=True)
class Want:
    cpu: float
    memory: int
    disk: int
    region: str | None = None
    max_price_hour: int | None = None  # planck per hour; None: any price


@dataclass(frozen=True)
class Placement:
    """The host that took the VM and the unit prices the VM will pay there (planck/hour)."""

    host_id: str
    price_cpu_hour: int
    price_memory_gib_hour: int
    price_disk_gib_hour: int


class NoHostFitsError(Exception):
    """No online host can take the VM; the message says what is missing."""


_FITS = (
    "reserved_cpu + :cpu <= cpu + 0.000000001"
    " AND reserved_memory + :memory <= memory AND reserved_disk + :disk <= disk"
)
# Online, fits, in the region, under the price, not excluded: constant fragments only, every
# value is a bound parameter.
_CANDIDATE = (
    "SELECT id FROM hosts WHERE last_heartbeat_at >= :since AND "  # noqa: S608
    + _FITS
    + " AND (:region IS NULL OR region = :region)"
    " AND (:max_price IS NULL OR :cpu * price_cpu_hour + :memory_gib * price_memory_gib_hour"
    " + :disk_gib * price_disk_gib_hour <= :max_price){exclude}"
)
_PLACE = (
    "UPDATE hosts SET"
    " reserved_cpu = reserved_cpu + :cpu,"
    " reserved_memory = reserved_memory + :memory,"
    " reserved_disk = reserved_disk + :disk,"
    " load = (reserved_cpu + :cpu) / cpu + (reserved_memory + :memory) * 1.0 / memory"
    " WHERE id = (" + _CANDIDATE + " ORDER BY rep_tier DESC, load LIMIT 1{lock})"
    " AND " + _FITS + " RETURNING id, price_cpu_hour, price_memory_gib_hour, price_disk_gib_hour"
)
_TYPED = (
    bindparam("since", type_=DateTime(timezone=True)),
    bindparam("region", type_=String()),
    bindparam("cpu", type_=Float()),
    bindparam("memory", type_=BigInteger()),
    bindparam("disk", type_=BigInteger()),
    bindparam("memory_gib", type_=Float()),
    bindparam("disk_gib", type_=Float()),
    bindparam("max_price", type_=BigInteger()),
)
_LOCKS = {"sqlite": "", "skip": " FOR UPDATE SKIP LOCKED"}


def _compile(sql: str, exclude: bool, lock: str = "sqlite"):  # type: ignore[no-untyped-def]
    sql = sql.format(exclude=" AND id NOT IN :exclude" if exclude else "", lock=_LOCKS[lock])
    params = (*_TYPED, bindparam("exclude", expanding=True)) if exclude else _TYPED
    return text(sql).bindparams(*params)


_PLACE_STATEMENTS = {
    (lock, exclude): _compile(_PLACE, exclude, lock) for lock in _LOCKS for exclude in (False, True)
}
# Is there a fitting host at all, held by another placement or not? Decides whether a retry
# can succeed.
_ANY_FITS_STATEMENTS = {
    exclude: _compile(_CANDIDATE + " LIMIT 1", exclude) for exclude in (False, True)
}

_RELEASE = text(
    "UPDATE hosts SET"
    " reserved_cpu = reserved_cpu - :cpu,"
    " reserved_memory = reserved_memory - :memory,"
    " reserved_disk = reserved_disk - :disk,"
    " load = (reserved_cpu - :cpu) / cpu + (reserved_memory - :memory) * 1.0 / memory"
    " WHERE id = :id"
).bindparams(
    bindparam("cpu", type_=Float()),
    bindparam("memory", type_=BigInteger()),
    bindparam("disk", type_=BigInteger()),
)


def _cap(want: Want, price_limit: int | None) -> int | None:
    """The most the VM may cost per hour: the user's maximum and the platform's limit."""
    caps = [c for c in (want.max_price_hour, price_limit) if c is not None]
    return min(caps) if caps else None


def place(
    db: Session,
    want: Want,
    ttl: float,
    exclude: set[str] | None = None,
    money: Callable[[int], str] = str,
    price_limit: int | None = None,
    commit: bool = True,
) -> Placement:
    """Reserve `want` on the best online host that fits and commit (unless `commit` is
    False: then the reservation is part of the caller's transaction, which must commit or
    roll it back).

    Preference: the highest reputation tier, then the least loaded host in it (spreads
    VMs). A host where the VM would cost more than `price_limit` (planck per hour, the
    platform's `max_vm_price_per_hour`) does not fit: that bound is what keeps every charge
    of the VM inside its 64-bit column. Raises NoHostFitsError, whose message says what is
    missing (`money` formats prices in it)."""
    params: dict[str, object] = {
        "cpu": want.cpu,
        "memory": want.memory,
        "disk": want.disk,
        "memory_gib": want.memory / GIB,
        "disk_gib": want.disk / GIB,
        "region": want.region,
        "max_price": _cap(want, price_limit),
    }
    if exclude:
        params["exclude"] = sorted(exclude)
    postgres = db.get_bind().dialect.name == "postgresql"
    lock = "skip" if postgres else "sqlite"
    give_up = time.monotonic() + _RETRY_FOR
    for attempt in itertools.count():
        params["since"] = utcnow() - timedelta(seconds=ttl)
        row = db.execute(_PLACE_STATEMENTS[(lock, bool(exclude))], params).first()
        if commit:
            db.commit()
        if row is not None:
            return Placement(str(row[0]), int(row[1]), int(row[2]), int(row[3]))
        if not postgres:
            break  # one writer at a time: nothing fitting was skipped
        fits = db.execute(_ANY_FITS_STATEMENTS[bool(exclude)], params).first()
        if commit:
            db.commit()
        if fits is None or time.monotonic() >= give_up:
            break
        # Jittered so that the placements that collided do not collide again in step.
        time.sleep(random.uniform(0, min(_BACKOFF_MAX, 0.001 * 2**attempt)))  # noqa: S311
    raise NoHostFitsError(explain(db, want, ttl, exclude, money, price_limit))


def release(db: Session, host_id: str, want: Want, commit: bool = True) -> None:
    """Give `want` back to the host's free capacity (always succeeds); commits unless told
    the caller's transaction goes on."""
    db.execute(_RELEASE, {"id": host_id, "cpu": want.cpu, "memory": want.memory, "disk": want.disk})
    if commit:
        db.commit()


def _online(want: Want, ttl: float, exclude: set[str] | None = None) -> Select[Host]:
    """Online hosts in the wanted region (not excluded), as a query."""
    query = select(Host).where(Host.last_heartbeat_at >= utcnow() - timedelta(seconds=ttl))
    if want.region:
        query = query.where(Host.region == want.region)
    if exclude:
        query = query.where(Host.id.not_in(exclude))
    return query


def _price_on(host: Host, want: Want) -> int:
    return hourly_price(
        want.cpu, want.memory, want.disk,
        host.price_cpu_hour, host.price_memory_gib_hour, host.price_disk_gib_hour,
    )  # fmt: skip


def explain(
    db: Session,
    want: Want,
    ttl: float,
    exclude: set[str] | None = None,
    money: Callable[[int], str] = str,
    price_limit: int | None = None,
) -> str:
    """Why nothing fits, in the user's terms."""
    hosts = list(db.scalars(_online(want, ttl, exclude)))
    where = f" in region {want.region}" if want.region else ""
    if not hosts:
        return f"no provider fits: no host is online{where}"
    fitting = [
        h
        for h in hosts
        if h.reserved_cpu + want.cpu <= h.cpu + 1e-9
        and h.reserved_memory + want.memory <= h.memory
        and h.reserved_disk + want.disk <= h.disk
    ]
    cap = _cap(want, price_limit)
    cheapest = min((_price_on(h, want) for h in fitting), default=0)
    if fitting and cap is not None and cheapest > cap:
        if price_limit is not None and cap == price_limit != want.max_price_hour:
            return (
                f"no provider fits: {len(fitting)} host(s) online{where} have room, but on "
                f"each this VM would cost more than {money(price_limit)}/h, the most one VM "
                f"may cost here (the cheapest: {money(cheapest)}/h); ask for a smaller VM"
            )
        return (
            f"no provider fits: {len(fitting)} host(s) online{where} have room, but none "
            f"under {money(cap)}/h; the cheapest costs {money(cheapest)}/h"
        )
    if fitting:  # lost every race for the last capacity
        return f"no provider fits right now{where}: the hosts with room filled up; retry"
    free_cpu = max(h.cpu - h.reserved_cpu for h in hosts)
    free_mem = max(h.memory - h.reserved_memory for h in hosts)
    free_disk = max(h.disk - h.reserved_disk for h in hosts)
    short = []
    if want.cpu > free_cpu + 1e-9:
        short.append(f"{want.cpu:g} vCPU (largest free is {max(free_cpu, 0):g})")
    if want.memory > free_mem:
        short.append(
            f"{format_size(want.memory)} memory (largest free is {format_size(max(free_mem, 0))})"
        )
    if want.disk > free_disk:
        short.append(
            f"{format_size(want.disk)} disk (largest free is {format_size(max(free_disk, 0))})"
        )
    need = " and ".join(short) or "that combination of cpu, memory and disk"
    return f"no provider fits: {len(hosts)} host(s) online{where}, none has {need} free"


def quote(
    db: Session, want: Want, ttl: float, price_limit: int | None = None
) -> tuple[int, int] | None:
    """Cheapest and dearest hourly price (planck) among online hosts that would take `want`
    now (see `place` for `price_limit`), without reserving anything; None if none would."""
    query = _online(want, ttl).where(
        Host.reserved_cpu + want.cpu <= Host.cpu + 1e-9,
        Host.reserved_memory + want.memory <= Host.memory,
        Host.reserved_disk + want.disk <= Host.disk,
    )
    prices = [_price_on(h, want) for h in db.scalars(query.limit(1000))]
    cap = _cap(want, price_limit)
    if cap is not None:
        prices = [p for p in prices if p <= cap]
    return (min(prices), max(prices)) if prices else None
