"""A late create answer's container is deleted even though another try adopted it.

(Attacker review attack18, 2026-11-30; fixed: after the delete, a VM adopted meanwhile
with that container awaits its create again, unmetered.)

Three tries of one create (a request's worker, then the `creates` job twice):
1. Try 1 sends the create to host A, which is slow.
2. Meanwhile try 2 is refused by A, gives A's capacity back and places the VM on B
   (silent for now).
3. A answers try 1 with container X. The VM is on B, so try 1 does not adopt X and sends
   A a delete of X (`VMService._drop_late_create`, backend/vms.py).
4. While that delete is on its way (queued for one of A's agent slots, or in flight),
   try 3 runs: B refuses, the VM is placed back on A (the scheduler's first choice, the
   only host not tried), and A answers the same idempotency key with X, which try 3
   adopts: metered and billed from now on.
5. Try 1's delete lands: X is destroyed on A.

The VM record now points at a container the backend itself destroyed: the developer
pays the running price of a VM that does not exist (until a heartbeat reports it
missing), and their disk is gone. `_drop_late_create` decides on a state read before
its agent call and nothing stops another try adopting that very container meanwhile.

Fix: the drop must not race an adoption of the same container. E.g. record the dropped
(host, agent VM id) in the database before calling the agent (or mark the VM row) and
have `_adopt` refuse a container being dropped (the creates job then asks again, and the
agent makes a fresh one once X is gone); or, after the delete, re-read the VM and, if it
was adopted with X on A meanwhile, put it back to awaiting its create (agent_vm_id NULL,
metering undone) so that the next try creates it again. Never leave a VM record pointing
at a container the backend deleted."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import ledger_check, vms
from kumulus.backend.models import VM
from kumulus.client import ApiError
from kumulus.core.errors import KumulusError
from tests.backend.conftest import Actor
from tests.backend.two_host_creates import vm_answer, vm_on_one_of_two_hosts


class ScriptedAgent:
    """Each host answers its creates per `script[host]` in turn: a callable runs first
    (another try, meanwhile) and the VM is then answered; "refuse" is a 503; "silent" a
    timeout; "answer" the VM. The container's id depends only on the idempotency key, as
    the agent answers a retried create with the VM it made. `on_delete` runs (once) when
    a delete arrives, before it is carried out."""

    script: ClassVar[dict[str, list[Any]]] = {}
    on_delete: ClassVar[Callable[[], None] | None] = None
    calls: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, _url: str, host_id: str, *_: Any) -> None:
        self.host_id = host_id

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> SimpleNamespace:
        ScriptedAgent.calls.append(("create", self.host_id))
        step = ScriptedAgent.script[self.host_id].pop(0)
        if step == "silent":
            raise ApiError("timed out", None)
        if step == "refuse":
            raise ApiError("busy", 503, "unavailable")
        if callable(step):
            step(idempotency_key)
        return vm_answer("agent-" + idempotency_key)

    def delete_vm(self, vm_id: str) -> None:
        hook, ScriptedAgent.on_delete = ScriptedAgent.on_delete, None
        if hook is not None:
            hook()
        ScriptedAgent.calls.append(("delete " + vm_id, self.host_id))


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", ScriptedAgent)
    ScriptedAgent.script, ScriptedAgent.on_delete, ScriptedAgent.calls = {}, None, []


def _deliver(backend: TestClient, vm_id: str) -> None:
    """Another try of the VM's create, on its own session (another worker)."""
    app = backend.app
    with app.state.db.session() as db:  # type: ignore[attr-defined]
        service = vms.VMService(db, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None
        with contextlib.suppress(KumulusError):  # its host silent: asked again later
            service.deliver_create(row)


def test_a_late_create_is_not_deleted_under_a_try_that_adopted_it_meanwhile(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    vm_id, a, b = vm_on_one_of_two_hosts(backend, developer, ssh_keypair[1])
    container = "agent-" + vm_id

    def try_2(_key: str) -> None:
        _deliver(backend, vm_id)  # A refuses it; placed on B, which is silent
        with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
            row = db.get(VM, vm_id)
            assert row is not None and (row.host_id, row.agent_vm_id) == (b, None)

    def try_3() -> None:
        _deliver(backend, vm_id)  # B refuses; back on A, which answers with X
        with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
            row = db.get(VM, vm_id)
            assert row is not None and (row.host_id, row.agent_vm_id) == (a, container)

    ScriptedAgent.script = {a: [try_2, "refuse", "answer"], b: ["silent", "refuse"]}
    ScriptedAgent.on_delete = try_3
    backend.app.state.jobs.run_now("creates")  # type: ignore[attr-defined]  # try 1

    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None
        adopted = (row.host_id, row.agent_vm_id, row.actual_state)
    deleted = ("delete " + container, a) in ScriptedAgent.calls
    # The record must never point at (and bill for) a container the backend destroyed.
    assert not (deleted and adopted[:2] == (a, container) and adopted[2] != "pending"), (
        f"VM adopted as {adopted} while the backend deleted {container} on its host"
    )
    # Fixed: it awaits its create on A again, unmetered, and the next try makes it anew.
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None
        assert (row.host_id, row.agent_vm_id, row.actual_state) == (a, None, "pending")
        assert row.metered_until is None and row.ssh_port is None and row.reserved
    ScriptedAgent.script[a] = ["answer"]
    backend.app.state.jobs.run_now("creates")  # type: ignore[attr-defined]
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None
        assert (row.host_id, row.agent_vm_id, row.actual_state) == (a, container, "running")
        assert row.metered_until is not None
        assert ledger_check.violations(db) == []
