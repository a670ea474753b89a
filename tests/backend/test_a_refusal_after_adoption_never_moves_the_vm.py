"""A host's refusal of a create that another try already got adopted does not move the VM.

Two tries of the same create can be in flight on one host (a request's worker queued behind
slow hosts past its IN_FLIGHT, then the `creates` job; or a delete learning the VM's id).
A hostile agent answers one with the VM and the other with a refusal, the refusal last. The
VM was adopted: it runs there and is billed there. The late refusal must not give its hold
back, release its capacity, or place it on another host, where the developer would pay the
running rate for a VM that is not there while the first host runs it untracked.
(Attacker review 2026-11-30.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import billing, ledger_check, vms
from kumulus.backend.models import VM, Host
from kumulus.client import ApiError
from tests.backend.conftest import Actor
from tests.backend.two_host_creates import vm_answer, vm_on_one_of_two_hosts


class TwoFacedAgent:
    """While it holds the first create, `meanwhile(vm id)` runs (the other try, which it
    answers with the VM); then it refuses the first."""

    meanwhile: ClassVar[Callable[[str], None] | None] = None
    creates: ClassVar[list[str]] = []

    def __init__(self, _url: str, host_id: str, *_: Any) -> None:
        self.host_id = host_id

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> SimpleNamespace:
        TwoFacedAgent.creates.append(self.host_id)
        hook, TwoFacedAgent.meanwhile = TwoFacedAgent.meanwhile, None
        if hook is not None:
            hook(idempotency_key)
            raise ApiError("not enough memory", 409, "conflict")
        return vm_answer("agent-" + idempotency_key)


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", TwoFacedAgent)
    TwoFacedAgent.meanwhile, TwoFacedAgent.creates = None, []


def _other_try(backend: TestClient) -> Callable[[str], None]:
    def call(vm_id: str) -> None:
        app = backend.app
        with app.state.db.session() as db:  # type: ignore[attr-defined]
            service = vms.VMService(db, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]
            row = db.get(VM, vm_id)
            assert row is not None
            assert service.deliver_create(row) is True  # adopted

    return call


def test_a_late_refusal_of_an_adopted_create_leaves_it_where_it_runs(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    vm_id, placed_on, other = vm_on_one_of_two_hosts(backend, developer, ssh_keypair[1])
    host_ids = [placed_on, other]
    TwoFacedAgent.meanwhile = _other_try(backend)
    backend.app.state.jobs.run_now("creates")  # type: ignore[attr-defined]

    assert TwoFacedAgent.creates == [placed_on, placed_on]  # never another host
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None
        assert (row.host_id, row.agent_vm_id) == (placed_on, "agent-" + vm_id)
        assert row.actual_state == "running" and row.reserved
        assert billing.held_by(db, developer.id) > 0  # its hold is still there
        for host_id in host_ids:
            on = db.get(Host, host_id)
            assert on is not None
            assert on.reserved_cpu == (1 if host_id == placed_on else 0), host_id
        assert ledger_check.violations(db) == []
