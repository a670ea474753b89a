"""`Prefer: wait=N` cannot take the backend's request threads from everyone else.

A waiting request holds one of the process's request threads (FastAPI runs sync routes on
a pool of 40) while it watches the database. A developer whose VM is on a host that takes
its time (a colluding provider's agent holds each call for the whole deadline) sends many
`Prefer: wait=120` requests at once: only a few may wait, per account and in all; the rest
are answered 202 at once (RFC 7240 lets a server ignore the preference). Heartbeats,
other developers and /healthz keep being answered. (Attacker review 2026-11-30: 48 such
requests took every request thread for as long as the host held its calls; heartbeats
then timed out, so every host looked offline.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import vms
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor


class HoldingAgent:
    """Creates at once; holds every start until `release` is set."""

    release: ClassVar[threading.Event] = threading.Event()

    def __init__(self, *_: Any) -> None:
        pass

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> SimpleNamespace:
        return SimpleNamespace(
            vm_id="agent-" + idempotency_key,
            ssh_port=2222,
            status="Running",
            host_key=None,
            disk_used_bytes=None,
        )

    def stop_vm(self, vm_id: str) -> SimpleNamespace:
        return SimpleNamespace(
            vm_id=vm_id, ssh_port=2222, status="Stopped", host_key=None, disk_used_bytes=None
        )

    def start_vm(self, vm_id: str) -> SimpleNamespace:
        HoldingAgent.release.wait(60)
        return SimpleNamespace(
            vm_id=vm_id, ssh_port=2222, status="Running", host_key=None, disk_used_bytes=None
        )


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", HoldingAgent)
    HoldingAgent.release = threading.Event()


def test_many_waiting_requests_leave_threads_for_everyone_else(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host(db, account(db, "provider"))
        db.commit()
    vm = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "bob", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "1g"},
    ).json()
    stopped = backend.post(f"/v1/vms/{vm['id']}/stop", headers=developer.headers)
    assert stopped.json()["actualState"] == "stopped", stopped.text

    waiting = {"Authorization": f"Bearer {developer.token}", "Prefer": "wait=120"}
    codes: list[int] = []

    def start() -> None:
        codes.append(backend.post(f"/v1/vms/{vm['id']}/start", headers=waiting).status_code)

    flood = [threading.Thread(target=start, daemon=True) for _ in range(48)]
    try:
        for thread in flood:
            thread.start()
        time.sleep(3)  # every request is in by now
        answered: list[int] = []
        probe = threading.Thread(
            target=lambda: answered.append(backend.get("/healthz").status_code), daemon=True
        )
        began = time.monotonic()
        probe.start()
        probe.join(10)
        took = time.monotonic() - began
        assert answered == [200], f"/healthz not answered within {took:.1f} s"
        # Most of the flood was answered at once (202: recorded, not confirmed yet).
        assert codes.count(202) >= 48 - 16, codes
    finally:
        HoldingAgent.release.set()
        for thread in flood:
            thread.join(30)
