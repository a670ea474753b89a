from pathlib import Path

from fastapi.testclient import TestClient

from tests.backend.conftest import Actor


def test_ssh_key_crud_and_ownership(
    backend: TestClient, developer: Actor, provider: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    other = Actor(backend, "developer")
    resp = backend.post(
        "/v1/ssh-keys",
        headers=developer.headers,
        json={"name": "laptop", "publicKey": ssh_keypair[1]},
    )
    assert resp.status_code == 201
    key = resp.json()
    assert key["fingerprint"].startswith("SHA256:") and key["publicKey"] == ssh_keypair[1]
    dup = backend.post(
        "/v1/ssh-keys",
        headers=developer.headers,
        json={"name": "again", "publicKey": ssh_keypair[1]},
    )
    assert dup.status_code == 409
    assert [
        k["id"] for k in backend.get("/v1/ssh-keys", headers=developer.headers).json()["items"]
    ] == [key["id"]]
    assert backend.get("/v1/ssh-keys", headers=other.headers).json()["items"] == []
    assert backend.delete(f"/v1/ssh-keys/{key['id']}", headers=other.headers).status_code == 404
    assert backend.delete(f"/v1/ssh-keys/{key['id']}", headers=developer.headers).status_code == 204
    assert backend.get("/v1/ssh-keys", headers=developer.headers).json()["items"] == []


def test_bad_keys_are_422(backend: TestClient, developer: Actor) -> None:
    for text in ["ssh-ed25519 AAAA", "hello", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDE"]:
        resp = backend.post(
            "/v1/ssh-keys", headers=developer.headers, json={"name": "k", "publicKey": text}
        )
        assert resp.status_code == 422 and "publicKey" in resp.json()["detail"]
