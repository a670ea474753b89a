"""Asking again for what is already asked (start, stop, delete of a VM whose host has not
confirmed it) records nothing new: it neither calls the host again nor resets the VM's
backoff, and it writes no ledger rows. Otherwise a developer re-sending the same request
in a loop makes the backend call a host that is away as fast as requests come in (backoff
never applied) and post usage and holds at every request. (Attacker review 2026-11-30.)"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kumulus.backend import vms
from kumulus.backend.models import VM, LedgerEntry
from tests.backend.away_agent import AwayAgent
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", AwayAgent)
    AwayAgent.reset()


def _row(backend: TestClient, vm_id: str) -> VM:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None
        db.expunge(row)
        return row


def _entries(backend: TestClient) -> int:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        return int(db.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


def _tried(backend: TestClient, vm_id: str) -> None:
    for _ in range(200):
        if _row(backend, vm_id).converge_attempts >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"VM {vm_id}: its worker never tried")


@pytest.mark.parametrize("action", ["start", "stop", "delete"])
def test_asking_again_does_not_call_the_host_again(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str], action: str
) -> None:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host(db, account(db, "provider"))
        db.commit()
    vm_id = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "bob", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "1g"},
    ).json()["id"]
    if action == "start":
        backend.post(f"/v1/vms/{vm_id}/stop", headers=developer.headers)
    AwayAgent.away = True
    no_wait = {"Authorization": f"Bearer {developer.token}"}

    def ask() -> Any:
        if action == "delete":
            return backend.delete(f"/v1/vms/{vm_id}", headers=no_wait)
        return backend.post(f"/v1/vms/{vm_id}/{action}", headers=no_wait)

    assert ask().status_code == 202
    _tried(backend, vm_id)  # the host did not answer: backing off
    calls, backoff, entries = (
        len(AwayAgent.calls),
        _row(backend, vm_id).converge_after,
        _entries(backend),
    )
    for _ in range(10):
        assert ask().status_code == 202
    time.sleep(0.5)  # a kicked worker would have called by now
    assert len(AwayAgent.calls) == calls, AwayAgent.calls
    row = _row(backend, vm_id)
    assert (row.converge_attempts, row.converge_after) == (1, backoff)
    assert _entries(backend) == entries  # nothing was posted again
