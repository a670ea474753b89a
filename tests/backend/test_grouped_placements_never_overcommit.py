"""Placements group-committed by the app's placer (backend/group_commit.py): many at once,
from many threads, never overcommit a host, never spend money a developer does not have,
and each VM is placed once, with its hold, or refused having changed nothing."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import select

from kumulus.backend import billing
from kumulus.backend.clock import utcnow
from kumulus.backend.ledger import HOLD, HOLD_PROMO, PROMO, key_of
from kumulus.backend.models import VM, Account, Balance, Host
from kumulus.backend.vms import PlaceRequest
from kumulus.core.errors import ConflictError, PaymentRequiredError
from tests.backend.conftest import Actor

GIB = 1 << 30
UNIT = 10**12
CREDIT = 10 * UNIT  # the tests' sign-up credit (tests/backend/conftest.py)


def _hosts(backend: TestClient, count: int, price_cpu_hour: int) -> list[str]:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        account = Account(
            email=f"p{secrets.token_hex(3)}@x.io", password_hash="x", role="provider",
            created_at=utcnow(),
        )  # fmt: skip
        db.add(account)
        db.flush()
        ids = [secrets.token_hex(8) for _ in range(count)]
        for host_id in ids:
            db.add(
                Host(
                    id=host_id,
                    account_id=account.id,
                    wallet_address="w",
                    api_url="http://127.0.0.1:1",
                    public_ip="127.0.0.1",
                    region="eu",
                    cpu=4,
                    memory=8 * GIB,
                    disk=100 * GIB,
                    disk_quota=True,
                    isolated=True,
                    price_cpu_hour=price_cpu_hour,
                    price_memory_gib_hour=0,
                    price_disk_gib_hour=0,
                    registered_at=utcnow(),
                    last_heartbeat_at=utcnow(),
                )
            )
        db.commit()
    return ids


def _vms(backend: TestClient, account_id: int, count: int) -> list[str]:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        ids = [secrets.token_hex(8) for _ in range(count)]
        for vm_id in ids:
            db.add(
                VM(
                    id=vm_id,
                    account_id=account_id,
                    name="vm",
                    username="dev",
                    ssh_key="ssh-ed25519 AAAA",
                    cpu=0.5,
                    memory=GIB,
                    disk=GIB,
                    region="eu",
                    intended_state="running",
                    actual_state="pending",
                    reserved=False,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
        db.commit()
    return ids


def _place_all(backend: TestClient, owners: dict[str, int]) -> dict[str, str | Exception]:
    """Place the VMs (id: its developer's account) at once through the app's placer."""
    placer = backend.app.state.placer  # type: ignore[attr-defined]
    vm_ids = list(owners)

    def one(vm_id: str) -> str | Exception:
        try:
            return str(placer.run(PlaceRequest(vm_id, owners[vm_id], frozenset()), timeout=60))
        except (ConflictError, PaymentRequiredError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(vm_ids, pool.map(one, vm_ids), strict=True))


def test_grouped_placements_fill_hosts_exactly(backend: TestClient) -> None:
    hosts = _hosts(backend, 5, price_cpu_hour=0)  # 5 hosts x 8 VMs of 0.5 vCPU
    developer = Actor(backend, "developer")
    vm_ids = _vms(backend, developer.id, 60)
    outcomes = _place_all(backend, dict.fromkeys(vm_ids, developer.id))

    placed = {v: h for v, h in outcomes.items() if isinstance(h, str)}
    refused = [e for e in outcomes.values() if isinstance(e, Exception)]
    assert len(placed) == 40
    assert {e.error_code for e in refused} == {"no_host_fits"}  # type: ignore[attr-defined]
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        for host in db.scalars(select(Host).where(Host.id.in_(hosts))):
            assert (host.reserved_cpu, host.reserved_memory) == (4.0, 8 * GIB)
            assert list(placed.values()).count(host.id) == 8
        for vm in db.scalars(select(VM).where(VM.id.in_(vm_ids))):
            assert (vm.host_id, vm.reserved) == (
                (placed[vm.id], True) if vm.id in placed else (None, False)
            )


def test_grouped_placements_spend_only_what_each_developer_has(backend: TestClient) -> None:
    # 36 UNIT per vCPU-hour: a 0.5 vCPU VM holds 10 minutes of 18 UNIT/h = 3 UNIT, so the
    # 10 UNIT of credit pays for 3 VMs; the hosts could take all 40.
    hosts = _hosts(backend, 5, price_cpu_hour=36 * UNIT)
    hold = billing.hold_for(18 * UNIT, backend.app.state.settings.hold_window)  # type: ignore[attr-defined]
    assert hold == 3 * UNIT
    developers = [Actor(backend, "developer") for _ in range(2)]
    vm_ids = {d.id: _vms(backend, d.id, 10) for d in developers}
    outcomes = _place_all(backend, {v: d for d, ids in vm_ids.items() for v in ids})

    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        balances = {
            (b.account_type, b.account_key): int(b.amount) for b in db.scalars(select(Balance))
        }
        for developer in developers:
            mine = {v: outcomes[v] for v in vm_ids[developer.id]}
            placed = [v for v, o in mine.items() if isinstance(o, str)]
            refused = [o for o in mine.values() if isinstance(o, Exception)]
            assert len(placed) == 3
            assert all(isinstance(o, PaymentRequiredError) for o in refused)
            held = sum(
                balances.get(key_of(HOLD, developer.id, v), 0)
                + balances.get(key_of(HOLD_PROMO, developer.id, v), 0)
                for v in vm_ids[developer.id]
            )
            assert held == 3 * hold
            assert balances[key_of(PROMO, developer.id)] == CREDIT - 3 * hold
        reserved = sum(h.reserved_cpu for h in db.scalars(select(Host).where(Host.id.in_(hosts))))
        assert reserved == 0.5 * 3 * len(developers)  # refusals gave their hosts back
