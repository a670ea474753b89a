"""A create whose replica died between committing the VM's row and placing it (kill -9
behind a load balancer) left a VM that no job places. The client retries with the same
Idempotency-Key on another replica: the retry places that VM (once: a second retry finds
it placed and changes nothing), instead of answering it unplaced forever. Found by
tests/e2e/test_replicas_survive_a_killed_backend.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import vms
from kumulus.backend.models import VM, Host
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor


def test_the_retry_places_the_left_vm_once(
    backend: TestClient,
    developer: Actor,
    ssh_keypair: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host_id = host(db, account(db, "provider")).id
        db.commit()
    backend.app.state.converger.close()  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {developer.token}", "Idempotency-Key": "k-1"}
    body = {"username": "bob", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "1g"}
    with monkeypatch.context() as m:  # the request "dies" right after the row's commit
        m.setattr(vms.VMService, "_place_new", lambda self, vm: vm)
        first = backend.post("/v1/vms", headers=headers, json=body)
    assert first.status_code == 202, first.text
    vm_id = first.json()["id"]

    def row() -> tuple[str | None, bool, float]:
        with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
            vm = db.get(VM, vm_id)
            h = db.get(Host, host_id)
            assert vm is not None and h is not None
            return vm.host_id, vm.reserved, h.reserved_cpu

    assert row()[:2] == (None, False)
    retried = backend.post("/v1/vms", headers=headers, json=body)
    assert retried.status_code == 202 and retried.json()["id"] == vm_id
    placed = row()
    assert placed[:2] == (host_id, True)
    again = backend.post("/v1/vms", headers=headers, json=body)
    assert again.json()["id"] == vm_id
    assert row() == placed  # no second reservation
