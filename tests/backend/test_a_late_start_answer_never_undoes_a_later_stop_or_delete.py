"""A start whose host answers late must not undo what the developer asked for meanwhile.

The start is sent to the host (by the request's worker or the `starts` job); while the host
is answering, the developer stops or deletes the VM (recorded with its money at once). When
the host's "started" arrives, the later intent wins: a deleted VM stays deleted (its delete
is carried out, nothing billed, its hold not taken again), a stopped one is stopped on its
host and billed at the stopped rate. (Attacker review 2026-11-30: the late answer settled
the VM to `running` again, so a deleted VM came back to life, billed at the running rate
with a fresh hold, and its delete was never carried out.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import billing, ledger_check, vms
from kumulus.backend.models import VM
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor


class Agent:
    """Does what it is asked; `meanwhile` runs while it answers a start (a slow host)."""

    meanwhile: ClassVar[Callable[[], None] | None] = None
    calls: ClassVar[list[str]] = []

    def __init__(self, *_: Any) -> None:
        pass

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> SimpleNamespace:
        Agent.calls.append("create")
        return SimpleNamespace(
            vm_id="agent-" + idempotency_key,
            ssh_port=2222,
            status="Running",
            host_key=None,
            disk_used_bytes=None,
        )

    def start_vm(self, vm_id: str) -> SimpleNamespace:
        Agent.calls.append("start")
        if Agent.meanwhile is not None:
            Agent.meanwhile()
        return SimpleNamespace(
            vm_id=vm_id, ssh_port=2222, status="Running", host_key=None, disk_used_bytes=None
        )

    def stop_vm(self, vm_id: str) -> SimpleNamespace:
        Agent.calls.append("stop")
        return SimpleNamespace(
            vm_id=vm_id, ssh_port=2222, status="Stopped", host_key=None, disk_used_bytes=None
        )

    def delete_vm(self, vm_id: str) -> None:
        Agent.calls.append("delete")


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", Agent)
    Agent.meanwhile, Agent.calls = None, []


def _stopped_vm(backend: TestClient, developer: Actor, key: str, change: str) -> str:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host(db, account(db, "provider"))
        db.commit()
    resp = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "bob", "sshKey": key, "cpu": 1, "memory": "1g"},
    )
    assert resp.status_code == 201, resp.text
    vm_id = str(resp.json()["id"])
    stopped = backend.post(f"/v1/vms/{vm_id}/stop", headers=developer.headers)
    assert stopped.json()["actualState"] == "stopped", stopped.text
    # From here the host is only reached by the `starts` job (its schedule or the test's
    # run); while it answers the start, the developer's `change` is recorded.
    backend.app.state.converger.close()  # type: ignore[attr-defined]
    Agent.meanwhile = _service_call(backend, vm_id, change)
    started = backend.post(
        f"/v1/vms/{vm_id}/start", headers={"Authorization": f"Bearer {developer.token}"}
    )
    assert started.status_code == 202, started.text
    _run_starts(backend)
    Agent.meanwhile = None
    assert Agent.calls.count("start") == 1
    return vm_id


def _service_call(backend: TestClient, vm_id: str, change: str) -> Callable[[], None]:
    """The developer's request, made while the host answers the start."""

    def call() -> None:
        app = backend.app
        with app.state.db.session() as db:  # type: ignore[attr-defined]
            service = vms.VMService(db, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]
            row = db.get(VM, vm_id)
            assert row is not None
            getattr(service, change)(row)

    return call


def _row(backend: TestClient, vm_id: str) -> VM:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None
        db.expunge(row)
        return row


def _run_starts(backend: TestClient) -> None:
    backend.app.state.jobs.run_now("starts")  # type: ignore[attr-defined]


def test_a_delete_while_the_host_answers_a_start_stays_deleted(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    vm_id = _stopped_vm(backend, developer, ssh_keypair[1], "delete")

    row = _row(backend, vm_id)
    assert row.intended_state == "deleted", (row.intended_state, row.actual_state)
    assert billing.rate_of(row) == 0  # nothing billed after a delete
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        assert billing.held_by(db, developer.id) == 0  # its hold is not taken again
        assert ledger_check.violations(db) == []
    backend.app.state.jobs.run_now("deletes")  # type: ignore[attr-defined]
    assert _row(backend, vm_id).actual_state == "deleted"
    assert Agent.calls[-1] == "delete"  # what the host started is removed


def test_a_stop_while_the_host_answers_a_start_is_carried_out(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    vm_id = _stopped_vm(backend, developer, ssh_keypair[1], "stop")

    row = _row(backend, vm_id)
    assert row.intended_state == "stopped", (row.intended_state, row.actual_state)
    assert billing.rate_of(row) == billing.stopped_rate(row)
    # The host did start it: the stop is sent (again) until the host confirms.
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        db.get(VM, vm_id).converge_after = None  # type: ignore[union-attr]
        db.commit()
    backend.app.state.jobs.run_now("stops")  # type: ignore[attr-defined]
    assert Agent.calls[-1] == "stop"
    assert _row(backend, vm_id).actual_state == "stopped"
