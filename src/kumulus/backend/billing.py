"""Metering and the double-entry ledger.

Every VM is charged per millisecond of intended-running time at the unit prices fixed when
it was placed (stopped VMs pay for their disk only). A charge is one transaction of three
legs that sum to zero: the developer pays the price, the provider earns it minus the
platform fee, the platform keeps the fee. Sub-planck remainders are carried on the VM, so
charging in many small steps costs exactly what one big step would.

A VM's charge is claimed with a conditional UPDATE of its `metered_until`, so two backend
processes metering at once can never charge the same interval twice."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import VM, Host, LedgerEntry
from kumulus.core.money import MAX_CHARGE_HOURS, hourly_price

MS_PER_HOUR = 3_600_000
DEVELOPER, PROVIDER, PLATFORM, CHAIN = "developer", "provider", "platform", "chain"


class LedgerError(Exception):
    """A transaction that does not balance (a bug: nothing was written)."""


@dataclass(frozen=True)
class Leg:
    account_type: str
    account_id: int | None
    amount: int
    kind: str


def post(db: Session, legs: Sequence[Leg], vm_id: str | None = None, memo: str = "") -> str:
    """Add one balanced transaction (in the caller's database transaction); returns its id."""
    if not legs or sum(leg.amount for leg in legs) != 0:
        raise LedgerError(f"unbalanced transaction: {legs!r}")
    txn = secrets.token_hex(8)
    now = utcnow()
    db.add_all(
        LedgerEntry(
            txn_id=txn,
            account_type=leg.account_type,
            account_id=leg.account_id,
            amount=leg.amount,
            kind=leg.kind,
            vm_id=vm_id,
            memo=memo[:200],
            created_at=now,
        )
        for leg in legs
        if leg.amount != 0
    )
    return txn


def balance(db: Session, account_type: str, account_id: int | None) -> int:
    query = select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
        LedgerEntry.account_type == account_type
    )
    query = query.where(
        LedgerEntry.account_id.is_(None)
        if account_id is None
        else LedgerEntry.account_id == account_id
    )
    return int(db.scalar(query) or 0)


def running_rate(vm: VM) -> int:
    """planck per hour while the VM is meant to run (cpu + memory + disk)."""
    return hourly_price(
        vm.cpu, vm.memory, vm.disk, vm.price_cpu_hour, vm.price_memory_gib_hour,
        vm.price_disk_gib_hour,
    )  # fmt: skip


def stopped_rate(vm: VM) -> int:
    """planck per hour while the VM is stopped: its disk only."""
    return hourly_price(0, 0, vm.disk, 0, 0, vm.price_disk_gib_hour)


def rate_of(vm: VM) -> int:
    if vm.intended_state == "deleted" or vm.actual_state in ("failed", "deleted"):
        return 0
    return running_rate(vm) if vm.intended_state == "running" else stopped_rate(vm)


def split_fee(cost: int, fee_bps: int) -> tuple[int, int]:
    """(provider's share, platform fee) of a charge; the fee rounds down."""
    fee = cost * fee_bps // 10_000
    return cost - fee, fee


def meter(db: Session, vm: VM, fee_bps: int, now: datetime | None = None) -> int:
    """Charge the VM from `metered_until` to `now` at the rate of its current intended
    state; returns the planck charged (0 if another process got there first).

    One ledger entry (and commit) covers at most MAX_CHARGE_HOURS, so that no entry can
    outgrow its 64-bit column however long a VM went unmetered: with the VM's price bounded
    at placement, an entry is at most that price times the span (config checks it fits)."""
    now = now or utcnow()
    total = 0
    while True:
        charged, caught_up = _meter_span(db, vm, fee_bps, now)
        total += charged
        if caught_up:
            return total


def _meter_span(db: Session, vm: VM, fee_bps: int, now: datetime) -> tuple[int, bool]:
    """Charge one span of at most MAX_CHARGE_HOURS; (planck, whether metered up to now)."""
    if vm.metered_until is None or vm.host_id is None:
        return 0, True
    start = aware(vm.metered_until)
    end = min(now, start + timedelta(hours=MAX_CHARGE_HOURS))
    ms = int((end - start).total_seconds() * 1000)
    if ms <= 0:
        return 0, True
    cost, carry = divmod(rate_of(vm) * ms + vm.meter_carry, MS_PER_HOUR)
    claimed = db.execute(
        update(VM)
        .where(VM.id == vm.id, VM.metered_until == vm.metered_until)
        .values(metered_until=end, meter_carry=carry)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        db.refresh(vm)
        return 0, True
    if cost:
        provider = db.scalar(select(Host.account_id).where(Host.id == vm.host_id))
        earned, fee = split_fee(cost, fee_bps)
        post(
            db,
            [
                Leg(DEVELOPER, vm.account_id, -cost, "usage"),
                Leg(PROVIDER, provider, earned, "usage"),
                Leg(PLATFORM, None, fee, "fee"),
            ],
            vm_id=vm.id,
            memo=f"{ms / 1000:.3f} s {vm.intended_state}",
        )
    db.commit()
    db.refresh(vm)
    return cost, end >= now


def failure_reason(exc: BaseException) -> str:
    """One line about a failed charge, for logs (a driver's message can carry the whole
    statement and its parameters)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def start_metering(vm: VM, now: datetime | None = None) -> None:
    """The VM is placed: it pays from now on (caller commits)."""
    vm.metered_until = now or utcnow()
    vm.meter_carry = 0


def grant(db: Session, account_type: str, account_id: int, amount: int, memo: str) -> str:
    """Credit given by the platform (sign-up credit, refunds)."""
    return post(
        db,
        [Leg(PLATFORM, None, -amount, "credit"), Leg(account_type, account_id, amount, "credit")],
        memo=memo,
    )


def spend_per_hour(db: Session, account_id: int) -> int:
    vms = db.scalars(
        select(VM).where(
            VM.account_id == account_id,
            VM.actual_state != "deleted",
            VM.metered_until.is_not(None),
        )
    )
    return sum(rate_of(vm) for vm in vms)
