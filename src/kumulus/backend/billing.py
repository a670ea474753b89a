"""Metering against prepaid holds.

A VM can only run on money already set aside for it. When it is placed, a **hold** is
taken in the same database transaction: the developer's funds (promotional credit first,
then deposits) move to the VM's hold accounts, enough for `hold_window` seconds at the
placed host's price; no hold, no placement (402 with the numbers). From then on:

- Every millisecond of the VM is charged at the unit prices fixed at placement (stopped
  VMs pay for their disk only), with sub-planck remainders carried on the VM. Charges
  **accrue** on the VM against its hold and are **posted** to the ledger (hold -> provider
  earnings + platform fee) at least hourly and at every renewal, stop, start and delete.
  Usage drawn from promotional credit pays the provider's non-withdrawable account.
- The meter job **renews** the hold to a full window whenever less than half is left. A
  running VM whose hold cannot be renewed is stopped (it keeps what it has, at the stopped
  rate); a stopped VM whose hold runs out accrues nothing more, is `unfunded` and deleted
  after `unfunded_grace` unless its developer pays.
- Deleting returns what is left of the hold; stopping returns what a stopped VM does not
  need. The developer can therefore never owe more than they had: charges come out of the
  hold, and the ledger refuses any posting that would overdraw it.

Every change of a VM's money happens under the lock of its balances (`ledger.lock`), and
its metering fields are re-read under that lock, so two processes can never charge the
same interval twice."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import ledger
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.ledger import (
    CHAIN,
    DEVELOPER,
    HOLD,
    HOLD_PROMO,
    PLATFORM,
    PLATFORM_PROMO,
    PROMO,
    PROVIDER,
    PROVIDER_PROMO,
    Key,
    LedgerError,
    Leg,
    key_of,
)
from kumulus.backend.models import VM, Balance, Host
from kumulus.config import BackendSettings
from kumulus.core.errors import PaymentRequiredError
from kumulus.core.money import hourly_price

__all__ = [
    "CHAIN",
    "DEVELOPER",
    "PLATFORM",
    "PROMO",
    "PROVIDER",
    "PROVIDER_PROMO",
    "LedgerError",
    "Terms",
]

MS_PER_HOUR = 3_600_000
# A VM's hold accounts (keyed by its id): all that settling it needs while it only accrues
# usage (nothing to post, its hold covers the interval). Every settlement of the VM locks
# them, so two processes settling it serialise on them.
HOLD_ACCOUNTS = (HOLD, HOLD_PROMO)
# The reason given to the VMs the meter job stops because their hold could not be renewed.
STOPPED_FOR_FUNDS = "stopped because the balance is used up; deposit, then start it"


class Metered(Protocol):
    """What settling reads and writes of a VM: an ORM `VM`, or the plain `MeterRow` the
    meter job loads (backend/meter_rows.py) to settle thousands without the ORM."""

    id: str
    account_id: int
    host_id: str | None
    cpu: float
    memory: int
    disk: int
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


@dataclass(frozen=True)
class Terms:
    """The billing settings a charge needs."""

    fee_bps: int
    window: float  # seconds of the VM's current rate a hold covers
    post_every: float = 3600.0  # seconds between postings of accrued usage
    unfunded_grace: float = 7 * 86400.0
    heartbeat_ttl: float = 30.0  # a host silent longer is offline


@dataclass
class Outcome:
    """What settling one VM did."""

    charged: int = 0
    posted: bool = False
    stopped_for_funds: bool = False
    unfunded: bool = False
    expired: bool = False  # unfunded past the grace period: now being deleted


def terms_of(settings: BackendSettings) -> Terms:
    return Terms(
        fee_bps=settings.platform_fee_bps,
        window=settings.hold_window,
        post_every=settings.ledger_post_interval,
        unfunded_grace=settings.unfunded_grace,
        heartbeat_ttl=settings.heartbeat_ttl,
    )


# -- rates --------------------------------------------------------------------------------


def running_rate(vm: Metered) -> int:
    """planck per hour while the VM is meant to run (cpu + memory + disk)."""
    return hourly_price(
        vm.cpu, vm.memory, vm.disk, vm.price_cpu_hour, vm.price_memory_gib_hour,
        vm.price_disk_gib_hour,
    )  # fmt: skip


def stopped_rate(vm: Metered) -> int:
    """planck per hour while the VM is stopped: its disk only."""
    return hourly_price(0, 0, vm.disk, 0, 0, vm.price_disk_gib_hour)


def rate_of(vm: Metered, host_offline: bool = False) -> int:
    """What the VM pays per hour now. The developer never pays for a provider's failure:
    a VM its host no longer has (`missing`) pays nothing, and one on a host that stopped
    answering, or that its host reports stopped, pays for its disk only, whatever it was
    meant to be doing."""
    if vm.intended_state == "deleted" or vm.actual_state in ("failed", "deleted", "missing"):
        return 0
    # Its host reports it not running (exited, paused): nothing runs, the disk is kept.
    observed_stopped = vm.actual_state in ("stopped", "insufficient_funds")
    if vm.intended_state == "running" and not host_offline and not observed_stopped:
        return running_rate(vm)
    return stopped_rate(vm)


def intended_rate(vm: Metered) -> int:
    """What the VM costs per hour in the state its developer wants: what its hold is sized
    for (a start must be covered whatever the host last reported)."""
    if vm.intended_state == "deleted":
        return 0
    return running_rate(vm) if vm.intended_state == "running" else stopped_rate(vm)


def hold_for(rate_per_hour: int, window: float) -> int:
    """The hold that covers `window` seconds at `rate_per_hour` (rounded up)."""
    return -(-rate_per_hour * round(window * 1000) // MS_PER_HOUR)


def split_fee(cost: int, fee_bps: int) -> tuple[int, int]:
    """(provider's share, platform fee) of a charge; the fee rounds down."""
    fee = cost * fee_bps // 10_000
    return cost - fee, fee


# -- locking ------------------------------------------------------------------------------


def keys_of(vm: Metered, provider_id: int | None) -> list[Key]:
    return vm_keys(vm.id, vm.account_id, provider_id)


def hold_keys(vm_id: str, account_id: int) -> list[Key]:
    """The accounts taking or sizing the VM's hold moves money between: its developer's
    funds and the VM's holds. What a placement locks (`take_hold` posts nothing else):
    not the platform's accounts, which every settlement locks, so that placements neither
    queue behind the meter job nor, on several replicas, behind each other."""
    return [
        key_of(DEVELOPER, account_id),
        key_of(PROMO, account_id),
        key_of(HOLD, account_id, vm_id),
        key_of(HOLD_PROMO, account_id, vm_id),
    ]


def vm_keys(vm_id: str, account_id: int, provider_id: int | None) -> list[Key]:
    """Every account settling the VM may post to (`keys_of` before the VM is loaded)."""
    keys = [*hold_keys(vm_id, account_id), key_of(PLATFORM, None), key_of(PLATFORM_PROMO, None)]
    if provider_id is not None:
        keys += [key_of(PROVIDER, provider_id), key_of(PROVIDER_PROMO, provider_id)]
    return keys


@dataclass(frozen=True)
class Hosts:
    """What settling needs to know of the VMs' hosts: whose they are, which are offline."""

    provider: dict[str, int]
    offline: frozenset[str] = frozenset()

    def get(self, host_id: str) -> int | None:
        return self.provider.get(host_id)


def hosts_of(db: Session, vms: Iterable[VM], heartbeat_ttl: float | None = None) -> Hosts:
    return _hosts({vm.host_id for vm in vms if vm.host_id}, db, heartbeat_ttl)


def _hosts(host_ids: set[str], db: Session, heartbeat_ttl: float | None) -> Hosts:
    if not host_ids:
        return Hosts({})
    query = select(Host.id, Host.account_id, Host.last_heartbeat_at).where(Host.id.in_(host_ids))
    return hosts_from(((h, a, seen) for h, a, seen in db.execute(query)), heartbeat_ttl)


def hosts_from(
    rows: Iterable[tuple[str, int, datetime | None]], heartbeat_ttl: float | None
) -> Hosts:
    """`Hosts` from (host id, its provider's account id, its last heartbeat) rows; offline
    ones only when `heartbeat_ttl` is given."""
    provider: dict[str, int] = {}
    offline: set[str] = set()
    since = utcnow() - timedelta(seconds=heartbeat_ttl or 0)
    for host_id, account_id, seen in rows:
        provider[host_id] = account_id
        if heartbeat_ttl is not None and (seen is None or aware(seen) < since):
            offline.add(host_id)
    return Hosts(provider, frozenset(offline))


def lock_vms(
    db: Session, vms: Sequence[VM], heartbeat_ttl: float | None = None
) -> tuple[dict[Key, int], Hosts]:
    """Lock every balance the VMs' money touches, then re-read the VMs (what another
    process committed before the lock is seen now). Returns the balances and the VMs'
    hosts (offline ones only when `heartbeat_ttl` is given)."""
    db.flush()  # re-reading would drop unflushed changes
    hosts = hosts_of(db, vms, heartbeat_ttl)
    before = [vm.host_id for vm in vms]
    locked = ledger.lock(db, [k for vm in vms for k in keys_of(vm, hosts.get(vm.host_id or ""))])
    for start in range(0, len(vms), 500):  # one query per 500, not a refresh per VM
        ids = [vm.id for vm in vms[start : start + 500]]
        db.execute(select(VM).where(VM.id.in_(ids)).execution_options(populate_existing=True)).all()
    if [vm.host_id for vm in vms] != before:
        # A placement committed meanwhile (the caller's objects were read before it): the
        # hosts are those the VMs are on now. Their providers' balances were not locked,
        # so posting to them raises NotLockedError; a VM just placed has nothing to post,
        # and its hold is sized (a delete: given back) as it must be.
        hosts = hosts_of(db, vms, heartbeat_ttl)
    return locked, hosts


def _held(vm: Metered, locked: dict[Key, int]) -> tuple[int, int]:
    return (
        locked[key_of(HOLD_PROMO, vm.account_id, vm.id)],
        locked[key_of(HOLD, vm.account_id, vm.id)],
    )


def room(vm: Metered, locked: dict[Key, int]) -> int:
    """What the hold still covers beyond the usage accrued on it."""
    promo, cash = _held(vm, locked)
    return promo + cash - vm.accrued


def available(account_id: int, locked: dict[Key, int]) -> int:
    return max(locked[key_of(PROMO, account_id)], 0) + max(locked[key_of(DEVELOPER, account_id)], 0)


# -- moving money -------------------------------------------------------------------------


def fund(
    db: Session,
    vm: Metered,
    locked: dict[Key, int],
    amount: int,
    batch: ledger.PostingBatch | None = None,
) -> int:
    """Move up to `amount` from the developer's funds into the VM's hold, promotional
    credit first; returns what could not be covered. (`batch`: see `ledger.post`.)"""
    promo = min(max(locked[key_of(PROMO, vm.account_id)], 0), amount)
    cash = min(max(locked[key_of(DEVELOPER, vm.account_id)], 0), amount - promo)
    if promo or cash:
        ledger.post(
            db,
            locked,
            [
                Leg(PROMO, vm.account_id, -promo, "hold"),
                Leg(HOLD_PROMO, vm.account_id, promo, "hold"),
                Leg(DEVELOPER, vm.account_id, -cash, "hold"),
                Leg(HOLD, vm.account_id, cash, "hold"),
            ],
            vm_id=vm.id,
            memo="prepaid hold",
            batch=batch,
        )
    return amount - promo - cash


def release(
    db: Session,
    vm: Metered,
    locked: dict[Key, int],
    keep: int = 0,
    batch: ledger.PostingBatch | None = None,
) -> int:
    """Give back what the hold holds beyond its accrued usage plus `keep` (deposit-funded
    part first); returns the planck released. (`batch`: see `ledger.post`.)"""
    promo, cash = _held(vm, locked)
    excess = promo + cash - vm.accrued - keep
    if excess <= 0:
        return 0
    # Accrued usage is drawn from promotional credit first, so that part stays held.
    promo_free = max(promo - min(vm.accrued, promo), 0)
    cash_back = min(excess, cash - max(vm.accrued - promo, 0))
    promo_back = min(excess - cash_back, promo_free)
    if cash_back or promo_back:
        ledger.post(
            db,
            locked,
            [
                Leg(HOLD, vm.account_id, -cash_back, "release"),
                Leg(DEVELOPER, vm.account_id, cash_back, "release"),
                Leg(HOLD_PROMO, vm.account_id, -promo_back, "release"),
                Leg(PROMO, vm.account_id, promo_back, "release"),
            ],
            vm_id=vm.id,
            memo="hold released",
            batch=batch,
        )
    return cash_back + promo_back


def post_usage(
    db: Session,
    vm: Metered,
    locked: dict[Key, int],
    provider_id: int,
    fee_bps: int,
    now: datetime,
    batch: ledger.PostingBatch | None = None,
) -> bool:
    """Post the VM's accrued usage to the ledger: from its promotional hold first (earning
    the provider's non-withdrawable account), then from its deposit-funded hold.
    (`batch`: see `ledger.post`.)"""
    vm.posted_at = now
    if vm.accrued <= 0:
        return False
    held_promo, _ = _held(vm, locked)
    promo = min(vm.accrued, held_promo)
    cash = vm.accrued - promo
    promo_earned, promo_fee = split_fee(promo, fee_bps)
    earned, fee = split_fee(cash, fee_bps)
    ledger.post(
        db,
        locked,
        [
            Leg(HOLD_PROMO, vm.account_id, -promo, "usage"),
            Leg(PROVIDER_PROMO, provider_id, promo_earned, "usage"),
            Leg(PLATFORM_PROMO, None, promo_fee, "fee"),
            Leg(HOLD, vm.account_id, -cash, "usage"),
            Leg(PROVIDER, provider_id, earned, "usage"),
            Leg(PLATFORM, None, fee, "fee"),
        ],
        vm_id=vm.id,
        memo=f"usage to {aware(now).isoformat(timespec='seconds')}",
        batch=batch,
    )
    vm.accrued = 0
    return True


def charge(
    db: Session,
    vm: Metered,
    locked: dict[Key, int],
    now: datetime,
    host_offline: bool = False,
    batch: ledger.PostingBatch | None = None,
) -> tuple[int, bool]:
    """Accrue the VM's usage from `metered_until` to `now` at the rate of its intended
    state, topping its hold up from the developer's funds if it falls short. Returns
    (planck accrued, whether the funds ran out: then only what there was is charged).
    (`batch`: see `ledger.post`.)"""
    if vm.metered_until is None or vm.host_id is None:
        return 0, False
    start = aware(vm.metered_until)
    ms = int((now - start).total_seconds() * 1000)
    if ms <= 0:
        return 0, False
    rate = rate_of(vm, host_offline)
    if rate < 0:  # a row written around the API's bounds: never pay anyone for it
        raise LedgerError(f"VM {vm.id} has a negative price ({rate} planck/h)")
    cost, carry = divmod(rate * ms + vm.meter_carry, MS_PER_HOUR)
    short = cost - room(vm, locked)
    if short > 0:
        fund(db, vm, locked, short, batch)
    ran_out = cost > room(vm, locked)
    if ran_out:
        cost, carry = room(vm, locked), 0
    vm.accrued += cost
    vm.metered_until, vm.meter_carry = now, carry
    return cost, ran_out


# -- what callers use ---------------------------------------------------------------------


def start_metering(vm: VM, now: datetime | None = None) -> None:
    """The host runs the VM: it pays from now on (caller commits)."""
    vm.metered_until = now or utcnow()
    vm.meter_carry = 0
    vm.posted_at = vm.metered_until


def take_hold(
    db: Session,
    vm: Metered,
    locked: dict[Key, int],
    terms: Terms,
    money: Callable[[int], str] = str,
    batch: ledger.PostingBatch | None = None,
) -> None:
    """At placement, in the placement's transaction, with the VM's `hold_keys` locked
    (before placing, so that the lock order is the same as everywhere else: balances, then
    VMs, then hosts): hold a full window of the VM's running price.
    PaymentRequiredError (the caller rolls the placement back; nothing was posted) when
    the developer's funds cannot cover it. `batch`: see `ledger.post`; with it the VM's
    hold account is created if it has none, even when nothing is held."""
    want = hold_for(running_rate(vm), terms.window) - room(vm, locked)
    have = available(vm.account_id, locked)
    if want > have:
        raise PaymentRequiredError(
            f"this VM costs {money(running_rate(vm))}/h on the host chosen; starting it "
            f"sets aside {money(want)} ({terms.window / 60:g} min of use) and you have "
            f"{money(have)} available: deposit tokens (kumulus wallet deposit) or choose a "
            "smaller VM",
            code="insufficient_funds",
        )
    if want > 0:
        fund(db, vm, locked, want, batch)
    if batch is not None:
        # The VM's hold account exists from its placement on, even holding nothing: the
        # meter job's first step settles a VM on the lock of its hold rows alone.
        batch.open_account(locked, key_of(HOLD, vm.account_id, vm.id))


def settle(
    db: Session,
    vm: Metered,
    terms: Terms,
    now: datetime | None = None,
    *,
    to_state: str | None = None,
    locked: dict[Key, int] | None = None,
    providers: Hosts | None = None,
    strict: bool = False,
    money: Callable[[int], str] = str,
    batch: ledger.PostingBatch | None = None,
) -> Outcome:
    """Bring the VM's money up to `now` (caller commits): accrue its usage, post it when
    due, and size its hold for the state it will be in (`to_state`, default its intended
    state): a full window of that state's rate, the rest released ("deleted": everything).

    `strict`: a hold that cannot be renewed raises PaymentRequiredError (a start) instead
    of stopping the VM (the meter job) or leaving it unfunded. Without `locked`, the VM's
    balances are locked here (the caller's transaction must not have locked any).

    `batch` (with `locked`): the postings are collected in it rather than written; the
    caller writes them with `ledger.flush_batch` before committing, as well as the VM's
    changed fields (the meter job's chunks: see jobs/meter.py)."""
    now = now or utcnow()
    if locked is None or providers is None:
        if not isinstance(vm, VM):
            raise TypeError("a plain row is settled under its caller's locks")
        locked, providers = lock_vms(db, [vm], terms.heartbeat_ttl)
    out = Outcome()
    provider_id = providers.get(vm.host_id or "")
    out.charged, ran_out = charge(
        db, vm, locked, now, (vm.host_id or "") in providers.offline, batch
    )
    if to_state is not None:
        if to_state == "stopped" and vm.intended_state != "stopped":
            vm.stop_requested_at = now
        elif to_state != "stopped":
            vm.stop_requested_at = None
        vm.intended_state = to_state
    target = hold_for(intended_rate(vm), terms.window)
    posted_at = aware(vm.posted_at) if vm.posted_at else None
    due = (
        ran_out
        or to_state is not None
        or room(vm, locked) * 2 < target
        or posted_at is None
        or (now - posted_at).total_seconds() >= terms.post_every
    )
    if not due or provider_id is None:
        return out
    out.posted = post_usage(db, vm, locked, provider_id, terms.fee_bps, now, batch)
    if room(vm, locked) < target:
        short = fund(db, vm, locked, target - room(vm, locked), batch)
        if short and strict:
            raise PaymentRequiredError(
                f"starting this VM sets aside {money(target)} ({terms.window / 60:g} min of "
                f"use); {money(short)} more are needed: deposit tokens (kumulus wallet deposit)",
                code="insufficient_funds",
            )
        if short and vm.intended_state == "running":
            vm.intended_state, vm.actual_state = "stopped", "stopping"
            vm.failure_reason, vm.updated_at = STOPPED_FOR_FUNDS, now
            vm.stop_requested_at = now
            out.stopped_for_funds = True
            target = hold_for(intended_rate(vm), terms.window)
    release(db, vm, locked, keep=target, batch=batch)
    if vm.intended_state == "stopped" and ran_out and room(vm, locked) <= 0:
        vm.unfunded_since = vm.unfunded_since or now
        out.unfunded = True
        if (now - aware(vm.unfunded_since)).total_seconds() >= terms.unfunded_grace:
            vm.intended_state, vm.actual_state, vm.updated_at = "deleted", "deleting", now
            vm.failure_reason = "deleted: its disk went unpaid for the whole grace period"
            out.expired = True
    elif room(vm, locked) > 0:
        vm.unfunded_since = None
    return out


def grant_promo(db: Session, account_id: int, amount: int, memo: str) -> str:
    """Promotional credit from the platform (sign-up credit): spendable on VMs, never
    withdrawable by anyone."""
    return ledger.transfer(
        db, (PLATFORM_PROMO, None), (PROMO, account_id), amount, "credit", memo=memo
    )


def balance(db: Session, account_type: str, account_id: int | None) -> int:
    return ledger.balance(db, account_type, account_id)


def held_by(db: Session, account_id: int) -> int:
    """What the developer's VMs hold (prepaid, not yet spent)."""
    vm_ids = list(db.scalars(select(VM.id).where(VM.account_id == account_id)))
    total = 0
    for chunk in range(0, len(vm_ids), 500):
        total += sum(
            int(a)
            for a in db.scalars(
                select(Balance.amount).where(
                    Balance.account_type.in_((HOLD, HOLD_PROMO)),
                    Balance.account_key.in_(vm_ids[chunk : chunk + 500]),
                )
            )
        )
    return total


def failure_reason(exc: BaseException) -> str:
    """One line about a failed charge, for logs (a driver's message can carry the whole
    statement and its parameters)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def spend_per_hour(db: Session, account_id: int) -> int:
    vms = db.scalars(
        select(VM).where(
            VM.account_id == account_id,
            VM.actual_state != "deleted",
            VM.metered_until.is_not(None),
        )
    )
    return sum(rate_of(vm) for vm in vms)


def unfunded_deadline(vm: VM, terms: Terms) -> datetime | None:
    """When an unfunded stopped VM will be deleted (None while it is funded)."""
    if vm.unfunded_since is None:
        return None
    return aware(vm.unfunded_since) + timedelta(seconds=terms.unfunded_grace)
