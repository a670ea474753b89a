from pathlib import Path

from fastapi.testclient import TestClient

from tests.fakes import FakeRuntime


def test_engine_failure_is_502_with_reason_and_leaves_nothing(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    fake_runtime.fail_create = "Docker could not create the VM: no space left on device"
    resp = fake_agent.post(
        "/v1/vms",
        json={
            "username": "devtest",
            "sshKey": ssh_keypair[1],
            "cpu": 1,
            "memory": "1g",
            "disk": "4g",
        },
    )
    assert resp.status_code == 502
    assert "no space left" in resp.json()["detail"]
    assert fake_runtime.vms == {}
