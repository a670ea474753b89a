"""Rows for billing tests: a provider with a host at known prices, a developer, VMs."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from kumulus.backend import ledger
from kumulus.backend.billing import Terms, lock_vms, start_metering, take_hold
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import VM, Account, Host

GIB = 1 << 30
UNIT = 10**12


def account(db: Session, role: str) -> Account:
    row = Account(
        email=f"{role}-{secrets.token_hex(4)}@example.com",
        password_hash="x",
        role=role,
        created_at=utcnow(),
    )
    db.add(row)
    db.flush()
    return row


def host(db: Session, owner: Account, online: bool = True) -> Host:
    row = Host(
        id=secrets.token_hex(8),
        account_id=owner.id,
        wallet_address="w",
        api_url="http://127.0.0.1:1",
        public_ip="127.0.0.1",
        cpu=8,
        memory=32 * GIB,
        disk=500 * GIB,
        disk_quota=True,
        isolated=True,
        registered_at=utcnow(),
        last_heartbeat_at=utcnow() if online else None,
        price_cpu_hour=UNIT // 100,  # 0.01 per vCPU-hour
        price_memory_gib_hour=UNIT // 200,  # 0.005 per GiB-hour
        price_disk_gib_hour=UNIT // 10_000,  # 0.0001 per GiB-hour
    )
    db.add(row)
    db.flush()
    return row


def vm(db: Session, dev: Account, on: Host, since: datetime, state: str = "running") -> VM:
    row = VM(
        id=secrets.token_hex(8),
        account_id=dev.id,
        name="vm",
        host_id=on.id,
        agent_vm_id=secrets.token_hex(8),
        username="alice",
        ssh_key="ssh-ed25519 AAAA",
        cpu=2,
        memory=4 * GIB,
        disk=20 * GIB,
        region="",
        intended_state=state,
        actual_state=state,
        reserved=False,
        created_at=since,
        updated_at=since,
        price_cpu_hour=on.price_cpu_hour,
        price_memory_gib_hour=on.price_memory_gib_hour,
        price_disk_gib_hour=on.price_disk_gib_hour,
    )
    start_metering(row, since)
    db.add(row)
    db.flush()
    return row


def earnings(db: Session, provider_id: int, amount: int) -> None:
    """Deposit-funded earnings, as a developer's paid usage leaves them (caller commits)."""
    payer = account(db, "developer")
    ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, payer.id), amount, "deposit")
    ledger.transfer(
        db, (ledger.DEVELOPER, payer.id), (ledger.PROVIDER, provider_id), amount, "usage"
    )


def placed(db: Session, dev: Account, on: Host, since: datetime, terms: Terms) -> VM:
    """A VM placed at `since` the way the create flow does it: hold taken from the
    developer's funds, metered from then on (commits)."""
    row = vm(db, dev, on, since)
    row.metered_until = None
    db.commit()
    locked, _ = lock_vms(db, [row])
    take_hold(db, row, locked, terms)
    start_metering(row, since)
    db.commit()
    return row


def post_hold(
    db: Session, locked: dict[ledger.Key, int], dev: int, vm_id: str, amount: int, batched: bool
) -> None:
    """Move `amount` of the developer's funds into the VM's hold under `locked`, written at
    once or through a PostingBatch (`batched`). Raises what `ledger.post` or
    `ledger.flush_batch` raises."""
    batch = ledger.PostingBatch() if batched else None
    legs = [
        ledger.Leg(ledger.DEVELOPER, dev, -amount, "hold"),
        ledger.Leg(ledger.HOLD, dev, amount, "hold"),
    ]
    ledger.post(db, locked, legs, vm_id=vm_id, batch=batch)
    if batch is not None:
        ledger.flush_batch(db, batch)


def waiting_for_a_lock(db: Database, pid: int) -> bool:
    """Whether the PostgreSQL backend `pid` is waiting for a lock now."""
    with db.session() as s:
        event = s.scalar(
            text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
        )
    return bool(event == "Lock")
