"""The agent makes each VM's SSH host key, hands the private half to the engine for the
VM's filesystem (and keeps it nowhere), and answers with the public key and its
fingerprint: at create, on every later look, and after an agent restart (read back from
the engine)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_ssh_private_key,
)
from fastapi.testclient import TestClient

from kumulus.agent.app import create_app
from kumulus.config import AgentSettings
from tests.fakes import FakeRuntime


def _create(agent: TestClient, ssh_key: str) -> dict[str, Any]:
    body = {"username": "dev", "sshKey": ssh_key, "cpu": 0.5, "memory": "256m", "disk": "2g"}
    resp = agent.post("/v1/vms", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def _fingerprint_by_ssh_keygen(line: str, tmp_path: Path) -> str:
    pub = tmp_path / "host_key.pub"
    pub.write_text(line + "\n")
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[1]


def test_a_new_vm_has_its_own_host_key_installed_before_it_starts(
    fake_agent: TestClient,
    fake_runtime: FakeRuntime,
    ssh_keypair: tuple[Path, str],
    tmp_path: Path,
) -> None:
    first = _create(fake_agent, ssh_keypair[1])
    second = _create(fake_agent, ssh_keypair[1])

    assert first["hostKey"].startswith("ssh-ed25519 ")
    assert first["hostKey"] != second["hostKey"]
    assert first["hostKeyFingerprint"] == _fingerprint_by_ssh_keygen(first["hostKey"], tmp_path)
    # The private key the engine got is the one whose public half the agent reports.
    private = load_ssh_private_key(fake_runtime.host_keys[first["vmId"]], password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    public = private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    assert public.decode() == first["hostKey"]
    # Nothing else of the VM carries the private key (labels and environment are public).
    spec = fake_runtime.vms[first["vmId"]].spec
    assert "PRIVATE" not in repr(spec) and spec.host_key == first["hostKey"]

    shown = fake_agent.get(f"/v1/vms/{first['vmId']}").json()
    assert (shown["hostKey"], shown["hostKeyFingerprint"]) == (
        first["hostKey"],
        first["hostKeyFingerprint"],
    )


def test_the_host_key_is_read_back_after_an_agent_restart(
    agent_settings: AgentSettings, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    app = create_app(agent_settings, fake_runtime, keypair=None, collect_stats=False)
    with TestClient(app) as agent:
        agent.headers["Authorization"] = f"Bearer {agent_settings.token_path.read_text().strip()}"
        made = _create(agent, ssh_keypair[1])
        agent.post(f"/v1/vms/{made['vmId']}/stop")

    # A new agent over the same engine, which is where the key is kept (a label).
    app = create_app(agent_settings, fake_runtime, keypair=None, collect_stats=False)
    with TestClient(app) as agent:
        agent.headers["Authorization"] = f"Bearer {agent_settings.token_path.read_text().strip()}"
        started = agent.post(f"/v1/vms/{made['vmId']}/start")
        assert started.status_code == 200, started.text
        listed = agent.get("/v1/vms").json()["items"]
    assert started.json()["hostKey"] == made["hostKey"]
    assert [(v["hostKey"], v["hostKeyFingerprint"]) for v in listed] == [
        (made["hostKey"], made["hostKeyFingerprint"])
    ]


def test_vms_without_a_valid_host_key_label_answer_null(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    old = _create(fake_agent, ssh_keypair[1])
    tampered = _create(fake_agent, ssh_keypair[1])
    for vm_id, label in ((old["vmId"], None), (tampered["vmId"], "ssh-ed25519 AAAA\nevil")):
        info = fake_runtime.vms[vm_id]
        fake_runtime.vms[vm_id] = replace(info, spec=replace(info.spec, host_key=label))

    for vm_id in (old["vmId"], tampered["vmId"]):
        resp = fake_agent.get(f"/v1/vms/{vm_id}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["hostKey"] is None and resp.json()["hostKeyFingerprint"] is None
