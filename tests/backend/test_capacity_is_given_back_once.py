"""A VM's reserved capacity goes back to its host once, whoever finishes with it.

The developer deletes a VM whose create is in flight on its host. The delete's worker reads
the VM (still reserved there) and asks the host for what it made with the same key; the
host, slow, first refuses the original create, whose try gives the capacity back; then it
refuses the delete's ask too, and the delete finishes. Capacity must have gone back once,
not twice: a host whose reserved counters go below what its VMs use looks emptier than it
is and is given more VMs than it can hold. (Attacker review 2026-11-30: the delete acted on
the VM as it had read it before the refusal and released the capacity again.)"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import billing, vms
from kumulus.backend.models import VM, Host
from kumulus.client import ApiError
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor


class SlowRefusingAgent:
    """Refuses every create. While refusing the first, the developer deletes the VM and the
    delete's worker starts; the worker's ask is held until `let_go`."""

    calls: ClassVar[int] = 0
    on_first: ClassVar[Any] = None
    let_go: ClassVar[threading.Event] = threading.Event()
    asked: ClassVar[threading.Event] = threading.Event()

    def __init__(self, *_: Any) -> None:
        pass

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> Any:
        SlowRefusingAgent.calls += 1
        if SlowRefusingAgent.calls == 1:
            SlowRefusingAgent.on_first(idempotency_key)
        else:
            SlowRefusingAgent.asked.set()
            SlowRefusingAgent.let_go.wait(30)
        raise ApiError("not enough memory", 409, "conflict")

    def delete_vm(self, vm_id: str) -> None:
        pass


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", SlowRefusingAgent)
    SlowRefusingAgent.calls = 0
    SlowRefusingAgent.let_go, SlowRefusingAgent.asked = threading.Event(), threading.Event()


def test_a_delete_racing_a_refused_create_gives_capacity_back_once(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    app = backend.app
    with app.state.db.session() as db:  # type: ignore[attr-defined]
        only = host(db, account(db, "provider")).id  # nowhere else to place it
        db.commit()
    app.state.converger.close()  # type: ignore[attr-defined]  # the test runs each try
    finishing: list[threading.Thread] = []

    def delete_meanwhile(vm_id: str) -> None:
        with app.state.db.session() as db:  # type: ignore[attr-defined]
            service = vms.VMService(db, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]
            service.delete(db.get(VM, vm_id))  # type: ignore[arg-type]

        def finish() -> None:  # the delete's worker
            with app.state.db.session() as db:  # type: ignore[attr-defined]
                service = vms.VMService(db, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]
                service.finish_delete(db.get(VM, vm_id))  # type: ignore[arg-type]

        finishing.append(threading.Thread(target=finish, daemon=True))
        finishing[0].start()
        assert SlowRefusingAgent.asked.wait(10)  # it has read the VM and asks the host

    SlowRefusingAgent.on_first = delete_meanwhile
    resp = backend.post(
        "/v1/vms",
        headers={"Authorization": f"Bearer {developer.token}"},
        json={"username": "bob", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "1g"},
    )
    assert resp.status_code == 202, resp.text
    vm_id = resp.json()["id"]
    app.state.jobs.run_now("creates")  # type: ignore[attr-defined]  # refused: unplaced
    SlowRefusingAgent.let_go.set()
    finishing[0].join(30)

    with app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None and row.actual_state == "deleted"
        on = db.get(Host, only)
        assert on is not None
        assert (on.reserved_cpu, on.reserved_memory, on.reserved_disk) == (0, 0, 0)
        assert billing.held_by(db, developer.id) == 0
