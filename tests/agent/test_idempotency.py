from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from tests.fakes import FakeRuntime


def _req(key: str) -> dict[str, object]:
    return {"username": "devtest", "sshKey": key, "cpu": 0.5, "memory": "256m", "disk": "1g"}


def test_same_idempotency_key_gives_one_vm(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    headers = {"Idempotency-Key": "create-42"}
    first = fake_agent.post("/create-vm", json=_req(ssh_keypair[1]), headers=headers)
    second = fake_agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers=headers)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["vmId"] == second.json()["vmId"]
    assert len(fake_runtime.vms) == 1


def test_concurrent_retries_with_one_key_give_one_vm(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    fake_runtime.create_delay = 0.02
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda _: fake_agent.post(
                    "/v1/vms", json=_req(ssh_keypair[1]), headers={"Idempotency-Key": "same"}
                ),
                range(8),
            )
        )
    assert {r.json()["vmId"] for r in results} == set(fake_runtime.vms)
    assert len(fake_runtime.vms) == 1
    assert sorted(r.status_code for r in results) == [200] * 7 + [201]


def test_too_long_key_is_refused(fake_agent: TestClient, ssh_keypair: tuple[Path, str]) -> None:
    resp = fake_agent.post(
        "/v1/vms", json=_req(ssh_keypair[1]), headers={"Idempotency-Key": "k" * 200}
    )
    assert resp.status_code == 422


def test_same_key_with_a_different_request_is_refused(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    headers = {"Idempotency-Key": "k1"}
    assert fake_agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers=headers).status_code == 201
    other = {**_req(ssh_keypair[1]), "memory": "512m"}
    resp = fake_agent.post("/v1/vms", json=other, headers=headers)
    assert resp.status_code == 422 and "different request" in resp.json()["detail"]
    assert len(fake_runtime.vms) == 1


def test_retry_replaces_a_vm_whose_first_attempt_died_before_start(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    first = fake_agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers={"Idempotency-Key": "x"})
    vm_id = first.json()["vmId"]
    # As if the agent crashed between create and start, perhaps before the VM's host key
    # went in (it lived in that request's memory only): started, its sshd could not run.
    fake_runtime._set(vm_id, "created")
    again = fake_agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers={"Idempotency-Key": "x"})
    assert again.status_code == 201, again.text
    assert list(fake_runtime.vms) == [again.json()["vmId"]] != [vm_id]
    assert fake_runtime.vms[again.json()["vmId"]].state == "running"


def test_retry_starts_a_vm_that_stopped_while_starting_and_was_left_behind(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    first = fake_agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers={"Idempotency-Key": "y"})
    vm_id = first.json()["vmId"]
    # dockerd died under it while it started; removing it failed with the engine away.
    fake_runtime._set(vm_id, "exited")
    again = fake_agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers={"Idempotency-Key": "y"})
    assert again.status_code == 200 and again.json()["vmId"] == vm_id
    assert fake_runtime.vms[vm_id].state == "running"
    assert len(fake_runtime.vms) == 1
