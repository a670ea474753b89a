"""What the tests of concurrent create tries share: an agent's answer with a VM, and a VM
accepted for creation (202) with two hosts to go to, carried out by the `creates` job
only (the request's own worker is stopped), so that a test drives each try itself."""

from __future__ import annotations

from types import SimpleNamespace

from fastapi.testclient import TestClient

from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor


def vm_answer(vm_id: str, status: str = "Running") -> SimpleNamespace:
    """What AgentClient answers for a VM (a create, start or stop)."""
    return SimpleNamespace(
        vm_id=vm_id, ssh_port=2222, status=status, host_key=None, disk_used_bytes=None
    )


def vm_on_one_of_two_hosts(
    backend: TestClient, developer: Actor, ssh_key: str
) -> tuple[str, str, str]:
    """Two hosts of one provider and a VM placed on one of them, its create not sent yet:
    (VM id, the host it is placed on, the other host)."""
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        provider = account(db, "provider")
        host_ids = [host(db, provider).id, host(db, provider).id]
        db.commit()
    backend.app.state.converger.close()  # type: ignore[attr-defined]  # the job carries it out
    resp = backend.post(
        "/v1/vms",
        headers={"Authorization": f"Bearer {developer.token}"},
        json={"username": "bob", "sshKey": ssh_key, "cpu": 1, "memory": "1g"},
    )
    assert resp.status_code == 202, resp.text
    vm_id, placed_on = resp.json()["id"], resp.json()["hostId"]
    (other,) = [h for h in host_ids if h != placed_on]
    return vm_id, placed_on, other
