"""Starting a stopped VM needs a full hold at its running price, whatever its host last
reported (a VM stopped for funds shows `insufficient_funds`, which alone is billed at the
disk rate): with less, the start is refused (402) and nothing changes."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import billing, ledger, vms
from kumulus.backend.clock import utcnow
from kumulus.backend.models import VM, Account
from tests.backend.billing_fixtures import account, host, vm
from tests.backend.conftest import Actor


class StartingAgent:
    def __init__(self, *_: Any) -> None:
        pass

    def start_vm(self, vm_id: str) -> SimpleNamespace:
        return SimpleNamespace(vm_id=vm_id, ssh_port=2222, status="Running")


def test_a_start_is_refused_below_a_running_hold(
    backend: TestClient, developer: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vms, "AgentClient", StartingAgent)
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    terms = billing.terms_of(backend.app.state.settings)  # type: ignore[attr-defined]
    with db_.session() as db:
        dev = db.get(Account, developer.id)
        assert dev is not None
        machine = vm(db, dev, host(db, account(db, "provider")), utcnow() - timedelta(minutes=1))
        machine.intended_state, machine.actual_state = "stopped", "insufficient_funds"
        machine.failure_reason = billing.STOPPED_FOR_FUNDS
        db.commit()
        running_hold = billing.hold_for(billing.running_rate(machine), terms.window)
        # Spend the sign-up credit down to half a running hold (more than a stopped one).
        spend = 10 * 10**12 - running_hold // 2
        ledger.transfer(db, (ledger.PROMO, dev.id), (ledger.PLATFORM_PROMO, None), spend, "x")
        db.commit()
        vm_id = machine.id
        assert billing.hold_for(billing.stopped_rate(machine), terms.window) < running_hold // 2
    refused = backend.post(f"/v1/vms/{vm_id}/start", headers=developer.headers)
    assert refused.status_code == 402, refused.text
    with db_.session() as db:
        row = db.get(VM, vm_id)
        assert row is not None and row.intended_state == "stopped"
        ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, developer.id), 10**12, "d")
        db.commit()
    started = backend.post(f"/v1/vms/{vm_id}/start", headers=developer.headers)
    assert started.status_code == 200, started.text
    assert started.json()["actualState"] == "running"
