"""Developer endpoints: anonymous 401, providers 403, other developers 404."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import Actor

ROUTES = [
    ("GET", "/v1/ssh-keys"),
    ("POST", "/v1/ssh-keys"),
    ("DELETE", "/v1/ssh-keys/1"),
    ("GET", "/v1/vms"),
    ("POST", "/v1/vms"),
    ("GET", "/v1/vms/abc"),
    ("DELETE", "/v1/vms/abc"),
    ("POST", "/v1/vms/abc/start"),
    ("POST", "/v1/vms/abc/stop"),
    ("GET", "/v1/vms/abc/logs"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_anonymous_401_and_provider_403(
    backend: TestClient, provider: Actor, method: str, path: str
) -> None:
    assert backend.request(method, path, json={}).status_code == 401
    assert backend.request(method, path, json={}, headers=provider.headers).status_code == 403


def test_unknown_vm_is_404(backend: TestClient, developer: Actor) -> None:
    for method, path in ROUTES[5:]:
        assert backend.request(method, path, headers=developer.headers).status_code == 404


def test_no_host_online_is_409_with_reason_and_no_vm(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    resp = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={
            "username": "dev",
            "sshKey": ssh_keypair[1],
            "cpu": 1,
            "memory": "1g",
            "region": "eu",
        },
    )
    assert resp.status_code == 409
    assert resp.json()["detail"] == "no provider fits: no host is online in region eu"
    assert backend.get("/v1/vms", headers=developer.headers).json()["items"] == []


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"username": "root"}, "username"),
        ({"cpu": 0}, "cpu"),
        ({"memory": "lots"}, "memory"),
        ({"disk": "-1g"}, "disk"),
        ({"region": "EU West"}, "region"),
        ({"sshKey": "nope"}, "sshKey"),
    ],
)
def test_bad_vm_requests_are_422(
    backend: TestClient,
    developer: Actor,
    ssh_keypair: tuple[Path, str],
    over: dict[str, object],
    field: str,
) -> None:
    body = {"username": "dev", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "1g", **over}
    resp = backend.post("/v1/vms", headers=developer.headers, json=body)
    assert resp.status_code == 422 and field in resp.json()["detail"]


def test_someone_elses_key_id_is_404(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    other = Actor(backend, "developer")
    key_id = backend.post(
        "/v1/ssh-keys", headers=other.headers, json={"name": "k", "publicKey": ssh_keypair[1]}
    ).json()["id"]
    resp = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "dev", "sshKeyId": key_id, "cpu": 1, "memory": "1g"},
    )
    assert resp.status_code == 404
