from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import httpx
import pytest

from tests.e2e.agent_process import AgentProcess
from tests.e2e.conftest import ssh


@pytest.mark.slow
def test_parallel_creates_get_distinct_ports_and_all_log_in(
    agent: AgentProcess, ssh_keypair: tuple[Path, str], docker_client: docker.DockerClient
) -> None:
    body = {
        "username": "devtest",
        "sshKey": ssh_keypair[1],
        "cpu": 0.1,
        "memory": "128m",
        "disk": "1g",
    }

    def create(i: int) -> httpx.Response:
        with agent.client() as api:
            return api.post("/v1/vms", json={**body, "username": f"dev{i}"})

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(create, range(4)))
    vms = [r.json() for r in results]
    try:
        assert [r.status_code for r in results] == [201] * 4, [r.text for r in results]
        assert len({vm["sshPort"] for vm in vms}) == 4
        for i, vm in enumerate(vms):
            assert ssh(ssh_keypair[0], vm, "whoami").stdout.strip() == f"dev{i}"
    finally:
        with agent.client() as api:
            for vm in vms:
                if "vmId" in vm:
                    api.delete(f"/v1/vms/{vm['vmId']}")


def test_retried_create_with_same_key_makes_one_vm(
    api: httpx.Client, ssh_keypair: tuple[Path, str], docker_client: docker.DockerClient
) -> None:
    body = {
        "username": "devtest",
        "sshKey": ssh_keypair[1],
        "cpu": 0.1,
        "memory": "128m",
        "disk": "1g",
    }
    first = api.post("/create-vm", json=body, headers={"Idempotency-Key": "retry-me"})
    try:
        second = api.post("/create-vm", json=body, headers={"Idempotency-Key": "retry-me"})
        assert (first.status_code, second.status_code) == (201, 200)
        assert first.json()["vmId"] == second.json()["vmId"]
        found = docker_client.containers.list(
            all=True, filters={"label": "io.kumulus.vm.idempotency_key=retry-me"}
        )
        assert len(found) == 1
    finally:
        api.delete(f"/v1/vms/{first.json()['vmId']}")
