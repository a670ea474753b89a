"""A create its host does not answer in time is never retried on another host (the first
agent may still be making it: an unbilled VM with the developer's key). It answers 202,
stays placed on that host with its hold, and the `creates` job resolves it there with the
same idempotency key: adopted and billed from then on, or given back if the host refuses.
A delete meanwhile removes what the host made."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from kumulus.backend import billing, vms
from kumulus.backend.clock import utcnow
from kumulus.backend.models import VM, Host
from kumulus.client import ApiError
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor


class SlowAgent:
    """Makes every VM, but the first answer to each create comes too late (a timeout);
    asking again with the same key answers with the VM it made."""

    asked: ClassVar[list[tuple[str, str]]] = []  # (host id, call)
    made: ClassVar[dict[str, str]] = {}  # idempotency key -> agent VM id
    deleted: ClassVar[list[str]] = []
    refuse: ClassVar[bool] = False

    def __init__(self, _url: str, host_id: str, *_: Any) -> None:
        self.host_id = host_id

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> SimpleNamespace:
        SlowAgent.asked.append((self.host_id, "create"))
        if SlowAgent.refuse:
            raise ApiError("not enough memory", 409, "conflict")
        first = idempotency_key not in SlowAgent.made
        SlowAgent.made.setdefault(idempotency_key, "agent-" + idempotency_key)
        if first:
            raise ApiError("the agent did not answer within 90 s", None, "timeout", retry=True)
        return SimpleNamespace(
            vm_id=SlowAgent.made[idempotency_key],
            ssh_port=2222,
            status="Running",
            host_key=None,
            disk_used_bytes=None,
        )

    def delete_vm(self, vm_id: str) -> None:
        SlowAgent.deleted.append(vm_id)


@pytest.fixture(autouse=True)
def slow_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", SlowAgent)
    SlowAgent.asked, SlowAgent.made, SlowAgent.deleted, SlowAgent.refuse = [], {}, [], False


def _two_hosts(backend: TestClient) -> tuple[str, str]:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        ids = host(db, account(db, "provider")).id, host(db, account(db, "provider")).id
        db.commit()
        return ids


def _create(backend: TestClient, developer: Actor, key: str) -> Any:
    resp = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "bob", "sshKey": key, "cpu": 1, "memory": "1g"},
    )
    assert resp.status_code == 202, resp.text
    return resp.json()


def _age(backend: TestClient, vm_id: str) -> None:
    """Past the backoff its first unanswered try began."""
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        db.execute(
            update(VM).where(VM.id == vm_id).values(converge_after=utcnow() - timedelta(seconds=1))
        )
        db.commit()


def test_an_unanswered_create_is_adopted_on_its_own_host(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    _two_hosts(backend)
    vm = _create(backend, developer, ssh_keypair[1])
    assert vm["actualState"] == "pending" and vm["sshCommand"] is None
    assert [call for call in SlowAgent.asked] == [(vm["hostId"], "create")]  # one host only
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        assert billing.held_by(db, developer.id) > 0  # paid for before anything runs
        row = db.get(VM, vm["id"])
        assert row is not None and row.metered_until is None  # not billed while unknown

    jobs = backend.app.state.jobs  # type: ignore[attr-defined]
    assert jobs.run_now("creates").value == 0  # its backoff has not passed: left alone
    _age(backend, vm["id"])
    assert jobs.run_now("creates").value == 1
    assert {h for h, _ in SlowAgent.asked} == {vm["hostId"]}  # never another host
    shown = backend.get(f"/v1/vms/{vm['id']}", headers=developer.headers).json()
    assert shown["actualState"] == "running" and shown["sshPort"] == 2222
    with db_.session() as db:
        row = db.get(VM, vm["id"])
        assert row is not None and row.agent_vm_id == "agent-" + vm["id"]
        assert row.metered_until is not None  # billed from adoption on
    assert jobs.run_now("creates").value == 0  # resolved once


def test_a_refused_retry_gives_the_hold_and_capacity_back(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    first, second = _two_hosts(backend)
    vm = _create(backend, developer, ssh_keypair[1])
    other = second if vm["hostId"] == first else first
    _age(backend, vm["id"])
    SlowAgent.refuse = True
    assert backend.app.state.jobs.run_now("creates").value == 1  # type: ignore[attr-defined]
    shown = backend.get(f"/v1/vms/{vm['id']}", headers=developer.headers).json()
    assert shown["actualState"] == "failed" and "not enough memory" in shown["failureReason"]
    # Refused there, it was placed once more on the other host, which refused too.
    assert [call for call in SlowAgent.asked] == [
        (vm["hostId"], "create"), (vm["hostId"], "create"), (other, "create")
    ]  # fmt: skip
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        assert billing.held_by(db, developer.id) == 0
        for host_id in (vm["hostId"], other):
            on = db.get(Host, host_id)
            assert on is not None and on.reserved_cpu == 0


def test_deleting_an_unanswered_create_removes_what_the_host_made(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    _two_hosts(backend)
    vm = _create(backend, developer, ssh_keypair[1])
    resp = backend.delete(f"/v1/vms/{vm['id']}", headers=developer.headers)
    assert resp.status_code == 204, resp.text
    assert SlowAgent.deleted == ["agent-" + vm["id"]]  # the late VM did not survive
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        assert billing.held_by(db, developer.id) == 0
        on = db.get(Host, vm["hostId"])
        assert on is not None and on.reserved_cpu == 0
