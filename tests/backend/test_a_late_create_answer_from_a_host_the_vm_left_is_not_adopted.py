"""A create answered by a host after another try moved the VM elsewhere is not adopted.

Two tries of one create are in flight (a request's worker, then the `creates` job). The
first waits on host A. The second is refused by A, so it gives A's capacity back and
places the VM on host B, which does not answer yet. Then A's answer to the first try
arrives: it made the VM after all. That late answer must not be adopted: the record
would point at A's container (its ssh address, its id) while its host, capacity and pay
are B's, and B's own answer would then be dropped, leaving B running a VM nobody pays
for. A's container is deleted instead. (Attacker note, 2026-11-30.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import ledger_check, vms
from kumulus.backend.models import VM, Host
from kumulus.client import ApiError
from kumulus.core.errors import KumulusError
from tests.backend.conftest import Actor
from tests.backend.two_host_creates import vm_answer, vm_on_one_of_two_hosts


class SlowThenRefusingAgent:
    """The first create it gets runs `meanwhile(vm id)` (the other try) and then answers
    with the VM; any further create on the same host is refused; `silent` hosts never
    answer."""

    meanwhile: ClassVar[Callable[[str], None] | None] = None
    silent: ClassVar[set[str]] = set()
    calls: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, _url: str, host_id: str, *_: Any) -> None:
        self.host_id = host_id

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> SimpleNamespace:
        SlowThenRefusingAgent.calls.append(("create", self.host_id))
        if self.host_id in SlowThenRefusingAgent.silent:
            raise ApiError("timed out", None)
        hook, SlowThenRefusingAgent.meanwhile = SlowThenRefusingAgent.meanwhile, None
        if hook is None:
            raise ApiError("busy", 503, "unavailable")
        hook(idempotency_key)
        return vm_answer("agent-" + idempotency_key)

    def delete_vm(self, vm_id: str) -> None:
        SlowThenRefusingAgent.calls.append(("delete " + vm_id, self.host_id))


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", SlowThenRefusingAgent)
    SlowThenRefusingAgent.meanwhile = None
    SlowThenRefusingAgent.silent, SlowThenRefusingAgent.calls = set(), []


def _other_try(backend: TestClient, first_host: str, other_host: str) -> Callable[[str], None]:
    def call(vm_id: str) -> None:
        SlowThenRefusingAgent.silent = {other_host}
        app = backend.app
        with app.state.db.session() as db:  # type: ignore[attr-defined]
            service = vms.VMService(db, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]
            row = db.get(VM, vm_id)
            assert row is not None and row.host_id == first_host
            with pytest.raises(KumulusError):  # refused by A, placed on B, B silent
                service.deliver_create(row)
            db.refresh(row)
            assert row.host_id == other_host and row.agent_vm_id is None

    return call


def test_a_late_answer_from_the_host_a_vm_left_is_deleted_there_not_adopted(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    vm_id, first, other = vm_on_one_of_two_hosts(backend, developer, ssh_keypair[1])
    host_ids = [first, other]
    SlowThenRefusingAgent.meanwhile = _other_try(backend, first, other)
    backend.app.state.jobs.run_now("creates")  # type: ignore[attr-defined]

    assert ("create", other) in SlowThenRefusingAgent.calls  # the other try reached B
    assert ("delete agent-" + vm_id, first) in SlowThenRefusingAgent.calls
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None
        # Still waiting for B's answer: nothing of A's container in its record.
        assert (row.host_id, row.agent_vm_id, row.ssh_port) == (other, None, None)
        assert row.reserved
        for host_id in host_ids:
            on = db.get(Host, host_id)
            assert on is not None
            assert on.reserved_cpu == (1 if host_id == other else 0), host_id
        assert ledger_check.violations(db) == []
