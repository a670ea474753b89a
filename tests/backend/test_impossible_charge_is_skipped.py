"""A VM whose charge breaks a ledger rule (a negative price written straight into the
database, around the API's bounds) is logged and skipped by the meter job; every other VM
in its chunk is still metered and enforced, the other jobs still run, and the VM can still
be stopped and deleted."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from kumulus.backend import billing, vms
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import VM, Account
from tests.backend.billing_fixtures import UNIT, account, host, vm
from tests.backend.conftest import Actor


class FakeAgent:
    """The host's agent answering every request (only the backend is under test)."""

    def __init__(self, *_: Any) -> None:
        pass

    def stop_vm(self, vm_id: str) -> SimpleNamespace:
        return SimpleNamespace(vm_id=vm_id, status="Stopped")

    def delete_vm(self, vm_id: str) -> None:
        return None


def test_impossible_charge_is_skipped(
    backend: TestClient,
    developer: Actor,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vms, "AgentClient", FakeAgent)
    app = backend.app
    db_ = app.state.db  # type: ignore[attr-defined]
    jobs = app.state.jobs  # type: ignore[attr-defined]
    two_hours_ago = utcnow() - timedelta(hours=2)
    with db_.session() as db:
        dev = db.get(Account, developer.id)
        assert dev is not None
        other_dev = account(db, "developer")  # broke: their VM must still be stopped
        prov = account(db, "provider")
        on = host(db, prov)
        bad = vm(db, dev, on, two_hours_ago)
        # A price the API would never take: charging it would pay the developer.
        db.execute(update(VM).where(VM.id == bad.id).values(price_cpu_hour=-UNIT))
        good = vm(db, dev, on, two_hours_ago)
        broke = vm(db, other_dev, on, two_hours_ago)
        bad_id, good_id, broke_id, other_id = bad.id, good.id, broke.id, other_dev.id
        db.commit()

    with caplog.at_level(logging.WARNING):
        report: Any = jobs.run_now("meter").value
    assert (report.metered, report.skipped, report.stopped_for_funds) == (2, 1, 1)
    skipped = [r for r in caplog.records if "not metered this run" in r.getMessage()]
    assert len(skipped) == 1 and bad_id in skipped[0].getMessage()
    assert "negative price" in skipped[0].getMessage()
    # 2 vCPU * 0.01 + 4 GiB * 0.005 + 20 GiB * 0.0001 = 0.042 per hour, for 2 hours
    with db_.session() as db:
        left = billing.balance(db, billing.PROMO, developer.id) + billing.held_by(db, developer.id)
        assert left == pytest.approx(10 * UNIT - 2 * 42 * UNIT // 1000, abs=UNIT // 1000)
        rows = {v: db.get(VM, v) for v in (bad_id, good_id, broke_id)}
        assert aware(rows[good_id].metered_until) > two_hours_ago  # type: ignore[union-attr, arg-type]
        assert aware(rows[bad_id].metered_until) == two_hours_ago  # type: ignore[union-attr, arg-type]
        assert rows[broke_id].intended_state == "stopped"  # type: ignore[union-attr]
        assert rows[broke_id].actual_state == "stopping"  # type: ignore[union-attr]
        assert billing.balance(db, billing.DEVELOPER, other_id) == 0  # never below
    assert jobs.stats()["meter"].failures == 0

    # The other jobs are not held up by it.
    for name in ("prune", "deletes", "reputation"):
        assert jobs.run_now(name).ran
        assert jobs.stats()[name].failures == 0

    # The VM can still be stopped and deleted through the API.
    with caplog.at_level(logging.WARNING):
        stopped = backend.post(f"/v1/vms/{bad_id}/stop", headers=developer.headers)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["intendedState"] == "stopped"
    assert any(
        "not metered before the change" in r.getMessage() and bad_id in r.getMessage()
        for r in caplog.records
    )
    deleted = backend.delete(f"/v1/vms/{bad_id}", headers=developer.headers)
    assert deleted.status_code == 204, deleted.text
    assert backend.get(f"/v1/vms/{bad_id}", headers=developer.headers).status_code == 404
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        report = jobs.run_now("meter").value
    assert report.skipped == 0 and "not metered" not in caplog.text  # gone for good
