"""What a VM has used of its disk quota flows from its host to the developer: from the
host's create answer, then from its signed heartbeats (`vmStats[].diskUsedBytes`), into
`diskUsedBytes` of the VM (null until a host reports it); a heartbeat older than the value
stored does not overwrite it, and usage is not a state: the VM's state is untouched."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from kumulus.backend import vms
from kumulus.backend.models import Host
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import FULL_ISOLATION, Actor
from tests.backend.test_vm_host_key_is_stored import ScriptedAgent, _create, _row

MIB = 1 << 20
HOST_WALLET = new_mnemonic()


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", ScriptedAgent)
    ScriptedAgent.answer = {}


def _beat(
    backend: TestClient, host_id: str, vm_stats: list[dict[str, Any]], at: float, status: int = 202
) -> None:
    signer = keypair_from_mnemonic(HOST_WALLET)
    payload = {
        "kind": "health",
        "hostId": host_id,
        "agentVersion": "0.1.0",
        "isolation": FULL_ISOLATION,
        "vmStats": vm_stats,
    }
    env = sign_envelope(signer, payload, domain=Domain.HEARTBEAT, now=at)
    resp = backend.post("/v1/hosts/heartbeat", json=env.model_dump())
    assert resp.status_code == status, resp.text


def test_usage_from_the_answer_then_from_heartbeats(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    ScriptedAgent.answer = {"diskUsedBytes": 3 * MIB}
    status, vm = _create(backend, developer, ssh_keypair[1])
    assert status == 201 and vm["diskUsedBytes"] == 3 * MIB and vm["diskUsedAt"], vm
    row = _row(backend, vm["id"])
    assert row.host_id is not None and row.agent_vm_id is not None
    # The host (legacy: signing with the wallet stored on it) reports usage in heartbeats.
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        db.execute(
            update(Host)
            .where(Host.id == row.host_id)
            .values(wallet_address=keypair_from_mnemonic(HOST_WALLET).ss58_address)
        )
        db.commit()
    time.sleep(0.01)
    stats = {"vmId": row.agent_vm_id, "state": "running"}
    now = time.time()
    _beat(backend, row.host_id, [{**stats, "diskUsedBytes": 512 * MIB}], now)
    shown = backend.get(f"/v1/vms/{vm['id']}", headers=developer.headers).json()
    assert shown["diskUsedBytes"] == 512 * MIB and shown["actualState"] == "running"

    # Moved by less than a MiB: not written again; a heartbeat without it changes nothing.
    _beat(backend, row.host_id, [{**stats, "diskUsedBytes": 512 * MIB + 4096}], now + 0.01)
    _beat(backend, row.host_id, [stats], now + 0.02)
    assert _row(backend, vm["id"]).disk_used == 512 * MIB
    # A heartbeat signed before the newest stored one is refused as a replay: its older
    # news changes nothing.
    _beat(backend, row.host_id, [{**stats, "diskUsedBytes": MIB}], now - 20, status=401)
    assert _row(backend, vm["id"]).disk_used == 512 * MIB


def test_a_vm_no_host_measured_has_no_usage(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    status, vm = _create(backend, developer, ssh_keypair[1])
    assert status == 201 and vm["diskUsedBytes"] is None and vm["diskUsedAt"] is None


def test_a_negative_usage_is_refused(backend: TestClient) -> None:
    # A provider's number is checked like any other: a 422 naming the field, nothing stored.
    env = sign_envelope(
        keypair_from_mnemonic(HOST_WALLET),
        {"kind": "health", "hostId": "abc", "vmStats": [
            {"vmId": "0123456789abcdef", "state": "running", "diskUsedBytes": -1}
        ]},
        domain=Domain.HEARTBEAT,
    )  # fmt: skip
    resp = backend.post("/v1/hosts/heartbeat", json=env.model_dump())
    assert resp.status_code == 422 and "diskUsedBytes" in resp.text, resp.text
