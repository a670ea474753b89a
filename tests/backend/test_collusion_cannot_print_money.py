"""The collusion scenario of issue 11: a provider prices its only host in a region of its
own at the highest price the API accepts, and a developer with nothing but sign-up credit
runs a VM there. Before prepaid holds, one maintenance pass left the developer at -38,428
UNIT and the provider with +34,594 UNIT of withdrawable earnings.

Now: the VM is refused when its hold cannot be covered; at a price whose hold can be
covered, the developer ends at exactly zero, the VM is stopped for insufficient funds,
and the provider earned only promotional (non-withdrawable) money: a payout is refused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from kumulus.backend import ledger, vms
from kumulus.backend.billing import STOPPED_FOR_FUNDS
from kumulus.backend.clock import utcnow
from kumulus.backend.ledger_check import violations
from kumulus.backend.models import VM, Host
from kumulus.backend.payouts import PayoutError, request_payout
from tests.backend.billing_fixtures import UNIT, account, host
from tests.backend.conftest import Actor

MAX_UNIT_PRICE = 1000 * UNIT


class FakeAgent:
    def __init__(self, *_: Any) -> None:
        pass

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> SimpleNamespace:
        return SimpleNamespace(
            vm_id="agent-" + idempotency_key,
            ssh_port=2222,
            status="Running",
            host_key=None,
            disk_used_bytes=None,
        )


def _own_region_host(backend: TestClient, price_cpu: int) -> tuple[str, int]:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        owner = account(db, "provider")
        on = host(db, owner)
        db.execute(
            update(Host)
            .where(Host.id == on.id)
            .values(region="only-me", price_cpu_hour=price_cpu, price_memory_gib_hour=0,
                    price_disk_gib_hour=0)
        )  # fmt: skip
        db.commit()
        return on.id, owner.id


def _create(backend: TestClient, developer: Actor, key: str) -> Any:
    return backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "bob", "sshKey": key, "cpu": 1, "memory": "1g", "region": "only-me"},
    )


def test_a_vm_whose_hold_cannot_be_covered_is_refused(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(vms, "AgentClient", FakeAgent)
    host_id, _ = _own_region_host(backend, MAX_UNIT_PRICE)
    resp = _create(backend, developer, ssh_keypair[1])
    assert resp.status_code == 402, resp.text
    body = resp.json()
    assert body["code"] == "insufficient_funds"
    assert "1000 UNIT/h" in body["detail"] and "10 UNIT available" in body["detail"]
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        assert db.scalars(select(VM)).first() is None  # nothing placed, nothing kept
        on = db.get(Host, host_id)
        assert on is not None and on.reserved_cpu == 0
        assert ledger.balance(db, ledger.PROMO, developer.id) == 10 * UNIT


def test_colluding_provider_earns_nothing_withdrawable(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(vms, "AgentClient", FakeAgent)
    # 54 UNIT per vCPU-hour: the ten-minute hold (9 UNIT) fits the 10 UNIT of credit.
    _, owner = _own_region_host(backend, 54 * UNIT)
    resp = _create(backend, developer, ssh_keypair[1])
    assert resp.status_code == 201, resp.text
    vm_id = resp.json()["id"]
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        # An hour unmetered (54 UNIT of use): far more than the developer has.
        db.execute(
            update(VM).where(VM.id == vm_id).values(metered_until=utcnow() - timedelta(hours=1))
        )
        db.commit()
    report: Any = backend.app.state.jobs.run_now("meter").value  # type: ignore[attr-defined]
    assert report.stopped_for_funds == 1
    with db_.session() as db:
        machine = db.get(VM, vm_id)
        assert machine is not None
        assert (machine.intended_state, machine.actual_state) == ("stopped", "stopping")
        assert machine.failure_reason == STOPPED_FOR_FUNDS
        assert ledger.balance(db, ledger.PROMO, developer.id) == 0
        assert ledger.balance(db, ledger.DEVELOPER, developer.id) == 0
        assert ledger.balance(db, ledger.PROVIDER, owner) == 0  # nothing withdrawable
        assert ledger.balance(db, ledger.PROVIDER_PROMO, owner) == 9 * UNIT  # 10 less the fee
        with pytest.raises(PayoutError, match="only 0 planck earned"):
            request_payout(db, owner, "5Grw", 1, 0)
        assert violations(db) == []
    # And the stopped VM cannot be started again without money.
    started = backend.post(f"/v1/vms/{vm_id}/start", headers=developer.headers)
    assert started.status_code == 402, started.text
