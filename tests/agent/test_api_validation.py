"""Bad input is refused at the edge with a message, and no container is created."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeRuntime


def _req(key: str, **over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "username": "devtest",
        "sshKey": key,
        "cpu": 1,
        "memory": "1g",
        "disk": "4g",
    }
    body.update(over)
    return body


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"username": "root"}, "reserved"),
        ({"username": "Dev Test"}, "invalid username"),
        ({"username": "a;reboot"}, "invalid username"),
        ({"sshKey": "ssh-ed25519 AAAA"}, "sshKey"),
        ({"sshKey": "hello"}, "sshKey"),
        ({"cpu": 0}, "cpu"),
        ({"cpu": 1e-10}, "cpu"),  # would round to "no CPU limit" in Docker
        ({"cpu": 0.001}, "cpu"),
        ({"cpu": -1}, "cpu"),
        ({"cpu": 1000}, "cpu"),
        ({"cpu": "lots"}, "cpu"),
        ({"memory": "1x"}, "memory"),
        ({"memory": "-1g"}, "memory"),
        ({"memory": "16m"}, "memory must be at least"),
        ({"disk": "4q"}, "disk"),
        ({"disk": "100m"}, "disk must be at least"),
        ({"extra": "field"}, "extra"),
        ({"username": None}, "username"),
    ],
)
def test_bad_create_is_422_with_message(
    fake_agent: TestClient,
    fake_runtime: FakeRuntime,
    ssh_keypair: tuple[Path, str],
    over: dict[str, object],
    message: str,
) -> None:
    for path in ("/create-vm", "/v1/vms"):
        resp = fake_agent.post(path, json=_req(ssh_keypair[1], **over))
        assert resp.status_code == 422, resp.text
        assert message in resp.json()["detail"]
    assert fake_runtime.create_calls == 0


def test_missing_fields_and_broken_json(fake_agent: TestClient, fake_runtime: FakeRuntime) -> None:
    resp = fake_agent.post("/create-vm", json={})
    assert resp.status_code == 422
    assert "username" in resp.json()["detail"] and "sshKey" in resp.json()["detail"]
    resp = fake_agent.post(
        "/create-vm", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422
    assert fake_runtime.create_calls == 0


@pytest.mark.parametrize("vm_id", ["../etc", "kumulus-agent", "0123", "ZZZZZZZZZZZZZZZZ"])
def test_unknown_or_malformed_ids_are_404(fake_agent: TestClient, vm_id: str) -> None:
    assert fake_agent.get(f"/v1/vms/{vm_id}").status_code == 404
    assert fake_agent.delete(f"/v1/vms/{vm_id}").status_code == 404


def test_legacy_routes_validate_vm_id(fake_agent: TestClient) -> None:
    resp = fake_agent.post("/stop-vm", json={"vmId": "not-an-id"})
    assert resp.status_code == 422
    assert "vmId" in resp.json()["detail"]
    assert fake_agent.post("/stop-vm", json={"vmId": "0123456789abcdef"}).status_code == 404


def test_disk_size_refused_where_not_enforceable(
    agent_settings,
    ssh_keypair: tuple[Path, str],  # type: ignore[no-untyped-def]
) -> None:
    from kumulus.agent.app import create_app

    runtime = FakeRuntime(disk_quota=False)
    # A host without a disk quota is weakly isolated: only an opted-out provider takes VMs.
    settings = agent_settings.model_copy(update={"allow_weak_isolation": True})
    with TestClient(create_app(settings, runtime, collect_stats=False)) as client:
        client.headers["Authorization"] = f"Bearer {agent_settings.token_path.read_text().strip()}"
        host = client.get("/v1/host").json()
        assert host["diskQuotaSupported"] is False
        assert "cannot limit" in host["diskQuotaDetail"]
        resp = client.post("/create-vm", json=_req(ssh_keypair[1]))
        assert resp.status_code == 422
        assert "cannot enforce a disk size" in resp.json()["detail"]
        assert runtime.create_calls == 0
        # Without a disk size the VM is created, and says it has no disk limit.
        resp = client.post("/create-vm", json=_req(ssh_keypair[1], disk=None))
        assert resp.status_code == 201
        assert resp.json()["disk"] is None


def test_missing_image_is_503_with_the_fix(
    agent_settings,
    ssh_keypair: tuple[Path, str],  # type: ignore[no-untyped-def]
) -> None:
    from kumulus.agent.app import create_app

    runtime = FakeRuntime(image=False)
    with TestClient(create_app(agent_settings, runtime, collect_stats=False)) as client:
        client.headers["Authorization"] = f"Bearer {agent_settings.token_path.read_text().strip()}"
        resp = client.post("/create-vm", json=_req(ssh_keypair[1], disk=None))
        assert resp.status_code == 503
        assert "kumulus image build" in resp.json()["detail"]


def test_without_disk_size_an_enforcing_host_applies_its_default(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    resp = fake_agent.post("/create-vm", json=_req(ssh_keypair[1], disk=None))
    assert resp.status_code == 201
    assert resp.json()["disk"] == "10g"
    assert next(iter(fake_runtime.vms.values())).spec.disk == 10 << 30
