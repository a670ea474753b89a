"""Placement: choose an online host that fits, and reserve its capacity atomically.

Reservation is one conditional UPDATE per host (`reserved + want <= capacity`), checked by
its row count: correct on SQLite and PostgreSQL alike, with any number of backend
processes, and no lock held while talking to agents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Host
from kumulus.core.sizes import format_size


@dataclass(frozen=True)
class Want:
    cpu: float
    memory: int
    disk: int
    region: str | None = None


class NoHostFitsError(Exception):
    """No online host can take the VM; the message says what is missing."""


def _online(ttl: float):  # type: ignore[no-untyped-def]
    return Host.last_heartbeat_at >= utcnow() - timedelta(seconds=ttl)


def _fits(want: Want):  # type: ignore[no-untyped-def]
    return and_(
        Host.reserved_cpu + want.cpu <= Host.cpu + 1e-9,
        Host.reserved_memory + want.memory <= Host.memory,
        Host.reserved_disk + want.disk <= Host.disk,
    )


def _load_after(cpu: float, memory: int):  # type: ignore[no-untyped-def]
    return (Host.reserved_cpu + cpu) / Host.cpu + (
        Host.reserved_memory + memory
    ) * 1.0 / Host.memory


def reserve(db: Session, host_id: str, want: Want) -> bool:
    """Take `want` from the host's free capacity if it still fits; commit; True on success."""
    result = db.execute(
        update(Host)
        .where(Host.id == host_id, _fits(want))
        .values(
            reserved_cpu=Host.reserved_cpu + want.cpu,
            reserved_memory=Host.reserved_memory + want.memory,
            reserved_disk=Host.reserved_disk + want.disk,
            load=_load_after(want.cpu, want.memory),
        )
    )
    db.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release(db: Session, host_id: str, want: Want) -> None:
    db.execute(
        update(Host)
        .where(Host.id == host_id)
        .values(
            reserved_cpu=Host.reserved_cpu - want.cpu,
            reserved_memory=Host.reserved_memory - want.memory,
            reserved_disk=Host.reserved_disk - want.disk,
            load=_load_after(-want.cpu, -want.memory),
        )
    )
    db.commit()


def place(db: Session, want: Want, ttl: float, exclude: set[str] | None = None) -> Host:
    """Reserve capacity on the best online host that fits and return it.

    Preference: the least loaded host (spreads VMs; reputation will come first once it
    exists). A host that another placement filled in the meantime is skipped."""
    query = select(Host).where(_online(ttl), _fits(want))
    if want.region:
        query = query.where(Host.region == want.region)
    if exclude:
        query = query.where(Host.id.not_in(exclude))
    candidates = list(db.scalars(query.order_by(Host.load, Host.id).limit(16)))
    for host in candidates:
        if reserve(db, host.id, want):
            db.refresh(host)
            return host
    raise NoHostFitsError(explain(db, want, ttl, exclude))


def explain(db: Session, want: Want, ttl: float, exclude: set[str] | None = None) -> str:
    """Why nothing fits, in the user's terms."""
    query = select(Host).where(_online(ttl))
    if want.region:
        query = query.where(Host.region == want.region)
    if exclude:
        query = query.where(Host.id.not_in(exclude))
    hosts = list(db.scalars(query))
    where = f" in region {want.region}" if want.region else ""
    if not hosts:
        return f"no provider fits: no host is online{where}"
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
