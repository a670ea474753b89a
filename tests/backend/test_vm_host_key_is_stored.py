"""The backend keeps the host key a VM's agent reports when it makes the VM, with a
fingerprint it computes itself, and serves both; an answer with a malformed or
inconsistent key is the provider lying: refused (the create counts as refused by that
host, the VM goes elsewhere or fails), logged, never a 500 and never stored.

The agent here is the backend's real AgentClient over a transport that answers exactly
what each test says."""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from fastapi.testclient import TestClient

from kumulus.backend import vms
from kumulus.backend.models import VM
from kumulus.client import AgentClient, CallPolicy
from kumulus.core.hostkeys import parse_host_key
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor
from tests.signed_agent import signed_by

HOST_SIGNER = keypair_from_mnemonic(new_mnemonic())


class ScriptedAgent(AgentClient):
    """Answers every create with `answer` (the VM id filled in)."""

    answer: ClassVar[dict[str, Any]] = {}

    def __init__(self, base_url: str, host_id: str, keypair: Any, *_: Any, **__: Any) -> None:
        # Its answers are signed, as a real agent's are, by a key it stands for here.
        super().__init__(
            base_url,
            host_id,
            keypair,
            HOST_SIGNER.ss58_address,
            CallPolicy(allow_private=True),  # nothing is dialled: the transport answers
            transport=signed_by(HOST_SIGNER, self._reply),
        )

    @staticmethod
    def _reply(request: httpx.Request) -> httpx.Response:
        body = {
            "vmId": secrets.token_hex(8),
            "username": json.loads(request.content)["username"],
            "sshHost": "127.0.0.1",
            "sshPort": 2222,
            "sshCommand": "ssh -p 2222 bob@127.0.0.1",
            "status": "Running",
            "state": "running",
            "cpu": 1,
            "memory": "1g",
            "disk": "10g",
            "createdAt": datetime.now(UTC).isoformat(),
            **ScriptedAgent.answer,
        }
        return httpx.Response(201, json=body)


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", ScriptedAgent)
    ScriptedAgent.answer = {}


def _host_key(tmp_path: Path) -> str:
    path = tmp_path / f"host-{secrets.token_hex(4)}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _create(backend: TestClient, developer: Actor, ssh_key: str) -> tuple[int, dict[str, Any]]:
    """(status of the create, which waits for the host's answer; the VM as listed)."""
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host(db, account(db, "provider"))
        db.commit()
    resp = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "bob", "sshKey": ssh_key, "cpu": 1, "memory": "1g"},
    )
    listed = backend.get("/v1/vms", headers=developer.headers)
    assert listed.status_code == 200, listed.text
    return resp.status_code, listed.json()["items"][-1]  # oldest first


def _settled(backend: TestClient, developer: Actor, vm_id: str) -> dict[str, Any]:
    for _ in range(200):
        vm = backend.get(f"/v1/vms/{vm_id}", headers=developer.headers).json()
        if vm["actualState"] != "pending":
            return vm  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"VM {vm_id} still pending: {vm}")


def _row(backend: TestClient, vm_id: str) -> VM:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None
        db.expunge(row)
        return row


def test_the_reported_key_is_stored_and_served_with_its_fingerprint_or_null(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key = _host_key(tmp_path)
    fingerprint = parse_host_key(key).fingerprint
    ScriptedAgent.answer = {"hostKey": key, "hostKeyFingerprint": fingerprint}

    status, vm = _create(backend, developer, ssh_keypair[1])

    assert status == 201 and vm["actualState"] == "running", vm
    shown = backend.get(f"/v1/vms/{vm['id']}", headers=developer.headers).json()
    assert (shown["hostKey"], shown["hostKeyFingerprint"]) == (key, fingerprint)
    assert (vm["hostKey"], vm["hostKeyFingerprint"]) == (key, fingerprint)
    row = _row(backend, vm["id"])
    assert (row.host_key, row.host_key_fingerprint) == (key, fingerprint)

    ScriptedAgent.answer = {}  # an agent from before host keys
    status, vm = _create(backend, developer, ssh_keypair[1])
    assert status == 201 and vm["actualState"] == "running", vm
    assert vm["hostKey"] is None and vm["hostKeyFingerprint"] is None


def test_a_malformed_or_inconsistent_key_is_refused_and_logged(
    backend: TestClient,
    developer: Actor,
    ssh_keypair: tuple[Path, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key, other = _host_key(tmp_path), _host_key(tmp_path)
    fingerprint = parse_host_key(key).fingerprint
    lies: list[dict[str, Any]] = [
        {"hostKey": key, "hostKeyFingerprint": parse_host_key(other).fingerprint},
        {"hostKey": f"{key}\n{other}", "hostKeyFingerprint": fingerprint},
        {"hostKey": f"{key} root@evil", "hostKeyFingerprint": fingerprint},
        {"hostKey": "ssh-ed25519 AAAAC3Nz", "hostKeyFingerprint": fingerprint},
        {"hostKeyFingerprint": fingerprint},
    ]
    for lie in lies:
        ScriptedAgent.answer = lie
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kumulus.backend.vms"):
            status, vm = _create(backend, developer, ssh_keypair[1])

        # Its host lied: refused there, and as the other hosts lie too, the VM failed,
        # with why. (The create waits for the outcome and answers 502 then; it may answer
        # early while the VM moves between hosts, so the VM is watched until it settles.)
        assert status in (201, 202, 502), (lie, vm)
        vm = _settled(backend, developer, vm["id"])
        assert vm["actualState"] == "failed", (lie, vm)
        assert "the agent's answer is not a VM" in vm["failureReason"]
        assert "hostKey" in vm["failureReason"] and "root@evil" not in vm["failureReason"]
        assert vm["hostKey"] is None and vm["hostKeyFingerprint"] is None
        row = _row(backend, vm["id"])
        assert row.host_key is None and row.agent_vm_id is None and row.metered_until is None
        assert any("agent create failed" in r.getMessage() for r in caplog.records)
