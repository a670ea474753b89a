"""A host that keeps a VM running long after its stop was asked for (the developer pays the
stopped rate meanwhile) fails the lease, once; a stop it carries out in time costs it
nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import billing, ledger, vms
from kumulus.backend.clock import utcnow
from kumulus.backend.models import Host
from kumulus.client import ApiError
from tests.backend.billing_fixtures import account, host, vm


class StubbornAgent:
    """Answers every stop with an error and keeps the VM running."""

    def __init__(self, *_: Any) -> None:
        pass

    def stop_vm(self, vm_id: str) -> None:
        raise ApiError("container is busy", 500, "internal")


def _stop_asked(backend: TestClient, minutes_ago: float) -> tuple[str, str]:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        on = host(db, account(db, "provider"))
        machine = vm(db, account(db, "developer"), on, utcnow() - timedelta(hours=1))
        machine.intended_state, machine.actual_state = "stopped", "running"  # heartbeats say so
        machine.stop_requested_at = utcnow() - timedelta(minutes=minutes_ago)
        db.commit()
        assert billing.rate_of(machine) == billing.stopped_rate(machine)  # paid as stopped
        return machine.id, on.id


def _failed_leases(backend: TestClient, host_id: str) -> int:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        on = db.get(Host, host_id)
        assert on is not None
        return on.leases_failed


def test_a_stop_ignored_past_the_grace_period_fails_the_lease_once(
    backend: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vms, "AgentClient", StubbornAgent)
    _, host_id = _stop_asked(backend, minutes_ago=11)
    jobs = backend.app.state.jobs  # type: ignore[attr-defined]
    assert jobs.run_now("stops").value == 0  # still not stopped
    assert _failed_leases(backend, host_id) == 1
    assert jobs.run_now("stops").value == 0
    assert _failed_leases(backend, host_id) == 1  # counted once


def test_a_stop_within_the_grace_period_costs_the_host_nothing(
    backend: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vms, "AgentClient", StubbornAgent)
    _, host_id = _stop_asked(backend, minutes_ago=2)
    assert backend.app.state.jobs.run_now("stops").value == 0  # type: ignore[attr-defined]
    assert _failed_leases(backend, host_id) == 0


def test_a_stop_records_when_it_was_asked_and_a_start_forgets_it(backend: TestClient) -> None:
    terms = billing.Terms(fee_bps=1000, window=600)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        on = host(db, account(db, "provider"))
        dev = account(db, "developer")
        ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, dev.id), 10**12, "deposit")
        machine = vm(db, dev, on, utcnow() - timedelta(minutes=1))
        db.commit()
        billing.settle(db, machine, terms, to_state="stopped")
        db.commit()
        assert machine.stop_requested_at is not None
        billing.settle(db, machine, terms, to_state="stopped")  # asked again: same time
        first = machine.stop_requested_at
        db.commit()
        assert machine.stop_requested_at == first
        billing.settle(db, machine, terms, to_state="running")  # funded: runs
        db.commit()
        assert machine.stop_requested_at is None
