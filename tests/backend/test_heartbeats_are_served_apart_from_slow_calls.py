"""A provider's agent that trickles its answer holds a request thread only until the call's
deadline, and meanwhile heartbeats are still served: they are verified and stored on
threads of their own, so even with every shared request thread taken (here: the only one)
hosts keep reporting and stay online. A backend that is not told to allow private agents
never dials one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account
from kumulus.config import BackendSettings
from kumulus.core.signing import Domain, sign_envelope
from tests.backend.billing_fixtures import account, host, vm
from tests.backend.conftest import Actor
from tests.trickling_agent import trickling_agent

DEADLINE = 2.0


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kumulus.db'}"


@pytest.fixture
def backend_settings(tmp_path: Path, database_url: str) -> BackendSettings:
    return BackendSettings(
        data_dir=tmp_path / "backend",
        KUMULUS_DATABASE_URL=database_url,
        agent_call_deadline=DEADLINE,
    )


@pytest.fixture
def agent() -> Iterator[tuple[str, threading.Event]]:
    with trickling_agent(every=0.5) as served:
        yield served


def _vm_on_agent(backend: TestClient, developer: Actor, url: str, wallet: Keypair) -> str:
    """A running VM of `developer` on a host at `url` that signs with `wallet`; the host's id
    and the VM's are returned as (host id, VM id)."""
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        on = host(db, account(db, "provider"))
        on.api_url, on.wallet_address = url, wallet.ss58_address
        dev = db.scalar(select(Account).where(Account.email == developer.email))
        assert dev is not None
        row = vm(db, dev, on, since=utcnow())
        db.commit()
        return on.id, row.id  # type: ignore[return-value]


def _one_request_thread() -> None:
    anyio.to_thread.current_default_thread_limiter().total_tokens = 1


def _heartbeat(backend: TestClient, wallet: Keypair, host_id: str) -> int:
    payload = {"kind": "health", "hostId": host_id, "agentVersion": "0.1.0"}
    envelope = sign_envelope(wallet, payload, domain=Domain.HEARTBEAT)
    return backend.post("/v1/hosts/heartbeat", json=envelope.model_dump()).status_code


def test_a_trickling_agent_is_cut_off_and_heartbeats_go_on(
    backend: TestClient,
    developer: Actor,
    wallet: Keypair,
    agent: tuple[str, threading.Event],
) -> None:
    url, called = agent
    host_id, vm_id = _vm_on_agent(backend, developer, url, wallet)
    backend.portal.call(_one_request_thread)  # type: ignore[union-attr]

    logs: list[tuple[int, float]] = []

    def read_logs() -> None:
        began = time.monotonic()
        resp = backend.get(f"/v1/vms/{vm_id}/logs", headers=developer.headers)
        logs.append((resp.status_code, time.monotonic() - began))

    slow = threading.Thread(target=read_logs, daemon=True)
    slow.start()
    assert called.wait(10), "the backend never called the agent"
    # The only shared thread is now the slow call's: a plain sync route waits for it...
    healthz = threading.Thread(target=lambda: backend.get("/healthz"), daemon=True)
    healthz.start()
    # ...but a heartbeat is served at once.
    began = time.monotonic()
    assert _heartbeat(backend, wallet, host_id) == 202
    took = time.monotonic() - began
    assert took < 1.0, f"heartbeat took {took:.2f} s"
    assert slow.is_alive() and healthz.is_alive(), "the shared thread was not taken"

    slow.join(DEADLINE + 10)
    healthz.join(10)
    assert logs and logs[0][0] == 503, logs  # host_unreachable: the call hit its deadline
    assert logs[0][1] < DEADLINE + 3, logs


def test_private_agents_are_not_dialled_unless_allowed(
    backend: TestClient,
    developer: Actor,
    wallet: Keypair,
    agent: tuple[str, threading.Event],
) -> None:
    url, called = agent
    _, vm_id = _vm_on_agent(backend, developer, url, wallet)
    backend.app.state.settings.allow_private_agents = False  # type: ignore[attr-defined]
    resp = backend.get(f"/v1/vms/{vm_id}/logs", headers=developer.headers)
    assert resp.status_code == 503 and "127.0.0.1 is loopback" in resp.json()["detail"]
    assert not called.is_set()
