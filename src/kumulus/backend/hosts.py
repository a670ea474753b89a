"""Host liveness (online while its signed heartbeats keep arriving), prices and views."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import Account, Host, ProviderProfile
from kumulus.backend.schemas import HostPublic, Prices
from kumulus.config import BackendSettings
from kumulus.core.errors import FieldProblem, InvalidError, NotFoundError
from kumulus.core.money import format_amount, parse_amount
from kumulus.core.sizes import format_size


def host_status(host: Host, ttl: float) -> Literal["online", "offline"]:
    if host.last_heartbeat_at is None:
        return "offline"
    fresh = utcnow() - aware(host.last_heartbeat_at) <= timedelta(seconds=ttl)
    return "online" if fresh else "offline"


def to_planck(settings: BackendSettings, amount: str, what: str) -> int:
    """A token amount typed by a person -> planck, or a 422 that says what is wrong."""
    try:
        return parse_amount(amount, settings.token_decimals)
    except ValueError as exc:
        raise InvalidError(
            f"{what}: {exc}", fields=[FieldProblem(loc=("body", what), msg=str(exc))]
        ) from exc


def bounded_planck(settings: BackendSettings, amount: str, what: str, most: int) -> int:
    """`to_planck`, refusing (InvalidError, 422) more than `most` planck: the bounds that
    bound what one VM can cost (and keep prices inside their 64-bit columns)."""
    planck = to_planck(settings, amount, what)
    if planck > most:
        limit = format_amount(most, settings.token_decimals, settings.token_symbol)
        field = tuple(what.split("."))
        raise InvalidError(
            f"{what}: at most {limit}", fields=[FieldProblem(("body", *field), f"at most {limit}")]
        )
    return planck


def prices_in(settings: BackendSettings, prices: Prices) -> tuple[int, int, int]:
    """Unit prices from a provider, each at most `max_unit_price` tokens per unit-hour."""
    most = settings.max_unit_price_planck
    return (
        bounded_planck(settings, prices.cpu, "prices.cpu", most),
        bounded_planck(settings, prices.memory_gib, "prices.memoryGib", most),
        bounded_planck(settings, prices.disk_gib, "prices.diskGib", most),
    )


def _vcpu(value: float) -> str:
    return f"{value:g} vCPU"


def _bytes(value: float) -> str:
    return format_size(int(value))


def check_capacity(settings: BackendSettings, cpu: float, memory: int, disk: int) -> None:
    """Refuse (InvalidError, 422, per field) a declared capacity that is not positive or
    passes the platform's caps: nothing checks a provider's inventory before VMs are placed
    by it, and an absurd one would win every "least loaded" comparison."""
    problems = []
    limits = (
        ("cpu", cpu, settings.max_host_cpu, _vcpu),
        ("memory", memory, settings.max_host_memory_bytes, _bytes),
        ("disk", disk, settings.max_host_disk_bytes, _bytes),
    )
    for name, value, most, show in limits:
        if not value > 0:  # also NaN
            problems.append(FieldProblem(("body", "capacity", name), "must be more than 0"))
        elif value > most:
            problems.append(
                FieldProblem(("body", "capacity", name), f"at most {show(most)} per host")
            )
    if problems:
        said = "; ".join(f"capacity.{p.loc[-1]}: {p.msg}" for p in problems)
        raise InvalidError(f"declared capacity refused: {said}", fields=problems)


_MACHINE = (("cpu", "cpuCount"), ("memory", "memoryTotal"), ("disk", "diskTotal"))


def _reported(reported: dict[str, Any], key: str) -> float | None:
    value = reported.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if 0 < value < math.inf else None


def machine_reported(reported: object) -> bool:
    """Whether a heartbeat's `host` says anything usable about the machine's size; one that
    does not is not judged (a flag stays until a report shows the declaration holds)."""
    return isinstance(reported, dict) and any(_reported(reported, k) for _, k in _MACHINE)


def capacity_problem(cpu: float, memory: int, disk: int, reported: dict[str, Any]) -> str | None:
    """Why the machine a heartbeat reports (`host`: cpuCount, memoryTotal, diskTotal) cannot
    hold the declared capacity, or None. The report is the provider's word too, so this
    catches carelessness and naive lies, not a determined liar: the hard caps
    (check_capacity) bound what anyone can claim at all."""
    declared = {"cpu": cpu, "memory": memory, "disk": disk}
    found = []
    for name, key in _MACHINE:
        value = _reported(reported, key)
        if value is not None and declared[name] > value + 1e-9:
            show = _vcpu if name == "cpu" else lambda v, n=name: f"{_bytes(v)} {n}"
            found.append(f"declares {show(declared[name])}, the machine reports {show(value)}")
    return "; ".join(found)[:300] or None


def prices_out(settings: BackendSettings, cpu: int, memory_gib: int, disk_gib: int) -> Prices:
    def fmt(planck: int) -> str:
        return format_amount(planck, settings.token_decimals)

    return Prices(cpu=fmt(cpu), memory_gib=fmt(memory_gib), disk_gib=fmt(disk_gib))


def starting_prices(settings: BackendSettings, profile: ProviderProfile) -> tuple[int, int, int]:
    """What a newly registered host charges: the provider's prices, else the platform's."""
    if profile.price_cpu_hour is not None:
        return (
            profile.price_cpu_hour,
            profile.price_memory_gib_hour or 0,
            profile.price_disk_gib_hour or 0,
        )
    return (
        settings.default_price_cpu_hour,
        settings.default_price_memory_gib_hour,
        settings.default_price_disk_gib_hour,
    )


def owned_host(db: Session, account: Account, host_id: str) -> Host:
    """The account's host `host_id`; NotFoundError for another's (as for none at all, so a
    stranger learns nothing of which hosts exist)."""
    host = db.get(Host, host_id[:32])
    if host is None or host.account_id != account.id:
        raise NotFoundError(f"no host {host_id[:40]}")
    return host


def set_draining(db: Session, account: Account, host_id: str, draining: bool) -> Host:
    """Start (True) or end (False) draining the account's host and commit: while it
    drains, the scheduler places no new VM there; the VMs already there keep running and
    can still be stopped and started. NotFoundError for a host that is not the account's."""
    host = owned_host(db, account, host_id)
    host.draining = draining
    db.commit()
    return host


def host_public(host: Host, settings: BackendSettings) -> HostPublic:
    return HostPublic(
        id=host.id,
        status=host_status(host, settings.heartbeat_ttl),
        api_url=host.api_url,
        public_ip=host.public_ip,
        region=host.region,
        cpu=host.cpu,
        memory=host.memory,
        disk=host.disk,
        disk_quota=host.disk_quota,
        agent_version=host.agent_version,
        registered_at=aware(host.registered_at),
        last_heartbeat_at=aware(host.last_heartbeat_at) if host.last_heartbeat_at else None,
        prices=prices_out(
            settings, host.price_cpu_hour, host.price_memory_gib_hour, host.price_disk_gib_hour
        ),
        reserved_cpu=host.reserved_cpu,
        reserved_memory=host.reserved_memory,
        reserved_disk=host.reserved_disk,
        reputation=round(host.reputation, 4),
        uptime_24h=host.uptime_24h,
        uptime_7d=host.uptime_7d,
        uptime_30d=host.uptime_30d,
        leases_completed=host.leases_completed,
        leases_failed=host.leases_failed,
        capacity_problem=host.capacity_problem,
        host_key=host.host_key,
        host_key_state=host.host_key_state,  # type: ignore[arg-type]
        delegated_until=aware(host.delegated_until) if host.delegated_until else None,
        isolated=host.isolated,
        isolation_problem=host.isolation_problem,
        draining=host.draining,
    )
