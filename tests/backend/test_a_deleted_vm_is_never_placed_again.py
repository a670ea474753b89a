"""A VM deleted while its host answers its create is never placed again.

The developer deletes a VM whose create is in flight (the delete gives its hold back at
once); the host then refuses the create. A refused create is normally placed once more on
another host, but this VM is wanted deleted: it must not be placed, must not take a new
hold (nothing would ever give it back: a delete returns the hold when it is recorded), and
no host may be asked to create it. (Attacker review 2026-11-30: it was placed on a second
host with a fresh hold that stayed held for good, and that host was asked to create it just
to delete it.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import billing, ledger_check, vms
from kumulus.backend.models import VM, Host
from kumulus.client import ApiError
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor


class RefusingAgent:
    """Refuses every create; `meanwhile(vm id)` runs while it answers the first one."""

    meanwhile: ClassVar[Callable[[str], None] | None] = None
    creates: ClassVar[list[str]] = []  # host ids asked to create

    def __init__(self, _url: str, host_id: str, *_: Any) -> None:
        self.host_id = host_id

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> Any:
        RefusingAgent.creates.append(self.host_id)
        hook, RefusingAgent.meanwhile = RefusingAgent.meanwhile, None
        if hook is not None:
            hook(idempotency_key)
        raise ApiError("not enough memory", 409, "conflict")

    def delete_vm(self, vm_id: str) -> None:
        pass


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", RefusingAgent)
    RefusingAgent.meanwhile, RefusingAgent.creates = None, []


def _delete(backend: TestClient) -> Callable[[str], None]:
    """The developer's delete, recorded while the host answers the create."""

    def call(vm_id: str) -> None:
        app = backend.app
        with app.state.db.session() as db:  # type: ignore[attr-defined]
            service = vms.VMService(db, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]
            row = db.get(VM, vm_id)
            assert row is not None
            service.delete(row)

    return call


def test_a_vm_deleted_during_its_refused_create_is_not_placed_again(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        provider = account(db, "provider")
        host_ids = {host(db, provider).id, host(db, provider).id}
        db.commit()
    backend.app.state.converger.close()  # type: ignore[attr-defined]  # the job carries it out
    RefusingAgent.meanwhile = _delete(backend)
    resp = backend.post(
        "/v1/vms",
        headers={"Authorization": f"Bearer {developer.token}"},
        json={"username": "bob", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "1g"},
    )
    assert resp.status_code == 202, resp.text
    vm_id = resp.json()["id"]
    jobs = backend.app.state.jobs  # type: ignore[attr-defined]
    jobs.run_now("creates")
    jobs.run_now("deletes")

    assert RefusingAgent.creates == [resp.json()["hostId"]]  # no other host was asked
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None and row.intended_state == "deleted"
        assert billing.held_by(db, developer.id) == 0  # no hold left behind
        for host_id in host_ids:
            on = db.get(Host, host_id)
            assert on is not None and on.reserved_cpu == 0 and on.reserved_memory == 0
        assert ledger_check.violations(db) == []
        jobs.run_now("deletes")
        db.expire_all()
        row = db.get(VM, vm_id)
        assert row is not None and row.actual_state == "deleted"
