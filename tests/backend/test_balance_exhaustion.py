"""A developer whose balance runs out is warned, then their running VMs are stopped (wanted
stopped at once; `insufficient_funds` once the host confirms), never deleted, and new VMs
are refused with 402."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from kumulus.backend import billing, vms
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import VM, Account, Host
from tests.backend.billing_fixtures import UNIT, account, host, vm
from tests.backend.conftest import Actor


def test_signup_credit_and_billing_view(backend: TestClient, developer: Actor) -> None:
    view = backend.get("/v1/billing", headers=developer.headers).json()
    assert view["balance"] == "10 UNIT" and view["balancePlanck"] == 10 * UNIT
    assert view["entries"][0]["kind"] == "credit" and view["warning"] is None
    assert backend.get("/v1/billing").status_code == 401


class StopRecorder:
    """An agent that confirms every stop, and remembers them."""

    stopped: ClassVar[list[str]] = []

    def __init__(self, *_: Any) -> None:
        pass

    def stop_vm(self, vm_id: str) -> SimpleNamespace:
        StopRecorder.stopped.append(vm_id)
        return SimpleNamespace(vm_id=vm_id, status="Stopped")


def test_running_out_stops_vms_and_refuses_new_ones(
    backend: TestClient,
    developer: Actor,
    ssh_keypair: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vms, "AgentClient", StopRecorder)
    StopRecorder.stopped = []
    app = backend.app
    db_ = app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        dev = db.get(Account, developer.id)
        assert dev is not None
        prov = account(db, "provider")
        expensive = host(db, prov)
        db.execute(update(Host).where(Host.id == expensive.id).values(price_cpu_hour=10 * UNIT))
        db.flush()
        db.refresh(expensive)
        machine = vm(db, dev, expensive, utcnow() - timedelta(hours=2))
        vm_id = machine.id
        db.commit()
    # 2 vCPU at 10 UNIT/h, two hours unmetered: the 10 UNIT of credit is all it can cost.
    report = app.state.jobs.run_now("meter").value  # type: ignore[attr-defined]
    assert report.charged == 10 * UNIT and report.stopped_for_funds == 1
    with db_.session() as db:  # the host goes away: the stop is recorded, retried later
        db.execute(update(Host).where(Host.id == expensive.id).values(last_heartbeat_at=None))
        db.commit()
    with db_.session() as db:
        row = db.get(VM, vm_id)
        assert row is not None
        # Recorded (billed as stopped from now on); the host has not confirmed it yet.
        assert (row.intended_state, row.actual_state) == ("stopped", "stopping")
        assert billing.balance(db, billing.DEVELOPER, developer.id) == 0  # never below
        assert billing.balance(db, billing.PROMO, developer.id) == 0
    assert app.state.jobs.run_now("stops").value == 0  # type: ignore[attr-defined]
    shown = backend.get(f"/v1/vms/{vm_id}", headers=developer.headers).json()
    assert shown["actualState"] == "unreachable" and "balance" in shown["failureReason"]
    assert StopRecorder.stopped == []  # the host is away: nothing sent yet

    with db_.session() as db:
        row = db.get(VM, vm_id)
        assert row is not None and row.converge_attempts == 1  # tried again after a backoff
        assert row.converge_after is not None and aware(row.converge_after) > utcnow()
    with db_.session() as db:  # the host is back, the backoff over: the stop is confirmed
        db.execute(update(Host).where(Host.id == expensive.id).values(last_heartbeat_at=utcnow()))
        db.execute(update(VM).where(VM.id == vm_id).values(converge_after=None))
        db.commit()
    shown = backend.get(f"/v1/vms/{vm_id}", headers=developer.headers).json()
    assert shown["actualState"] == "stopping"  # recorded, not confirmed yet
    assert app.state.jobs.run_now("stops").value == 1  # type: ignore[attr-defined]
    assert len(StopRecorder.stopped) == 1
    shown = backend.get(f"/v1/vms/{vm_id}", headers=developer.headers).json()
    assert shown["actualState"] == "insufficient_funds" and "balance" in shown["failureReason"]
    # Its disk is no longer paid for either: kept for the grace period, with the date.
    assert shown["deleteAfter"] is not None and "deposit before" in shown["fundsWarning"]
    assert app.state.jobs.run_now("stops").value == 0  # type: ignore[attr-defined]
    assert len(StopRecorder.stopped) == 1  # confirmed: never sent again
    view = backend.get("/v1/billing", headers=developer.headers).json()
    assert "used up" in view["warning"]
    refused = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "bob", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "1g"},
    )
    assert refused.status_code == 402 and "deposit" in refused.json()["detail"]


def test_heartbeats_keep_the_reason_a_vm_was_stopped() -> None:
    from datetime import UTC, datetime

    from kumulus.backend.vms import STOPPED_FOR_FUNDS, reconcile_inventory

    vm = VM(
        id="v1",
        agent_vm_id="a1",
        actual_state="stopping",
        intended_state="stopped",
        failure_reason=STOPPED_FOR_FUNDS,
        updated_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    reconcile_inventory([vm], {"a1": "exited"}, datetime.now(UTC))
    assert vm.actual_state == "insufficient_funds"  # the host stopped it: say why
    reconcile_inventory([vm], {"a1": "running"}, datetime.now(UTC))
    assert vm.actual_state == "running"  # started again somehow: say so
