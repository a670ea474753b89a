"""On the real engine: refused requests leave no container and no network behind."""

from pathlib import Path

import docker
import httpx
import pytest

BAD = [
    {"username": "root"},
    {"username": "dev;rm -rf /"},
    {"username": "$(reboot)"},
    {"sshKey": "ssh-ed25519 AAAA\n; touch /pwned"},
    {"sshKey": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDEi"},
    {"cpu": 0},
    {"cpu": 64},  # beyond this host's capacity -> 409
    {"memory": "1x"},
    {"memory": "100t"},
    {"disk": "10t"},
]


def _ours(client: docker.DockerClient) -> tuple[int, int]:
    return (
        len(client.containers.list(all=True, filters={"label": "io.kumulus.vm=1"})),
        len(client.networks.list(filters={"label": "io.kumulus.vm=1"})),
    )


@pytest.mark.parametrize("over", BAD)
def test_refused_and_nothing_created(
    api: httpx.Client,
    docker_client: docker.DockerClient,
    ssh_keypair: tuple[Path, str],
    over: dict[str, object],
) -> None:
    before = _ours(docker_client)
    body = {
        "username": "devtest",
        "sshKey": ssh_keypair[1],
        "cpu": 1,
        "memory": "1g",
        "disk": "4g",
        **over,
    }
    resp = api.post("/create-vm", json=body)
    assert resp.status_code in (409, 422), resp.text
    assert isinstance(resp.json()["detail"], str) and resp.json()["detail"]
    assert "Traceback" not in resp.text
    assert _ours(docker_client) == before
