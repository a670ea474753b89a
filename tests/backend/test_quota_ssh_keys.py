"""An account holds at most `max_ssh_keys` SSH keys: 409 `quota_exceeded` with the limit
in the message, nothing stored; deleting one makes room."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.backend.conftest import Actor
from tests.backend.limits_fixtures import client_of, settings_with


def _public_key(tmp_path: Path, name: str) -> str:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub").read_text().strip()


def assert_quota(resp: object, limit: int, what: str) -> None:
    assert resp.status_code == 409, resp.text  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert body["code"] == "quota_exceeded", body
    assert f"at most {limit} {what}" in body["detail"], body


def test_the_third_key_is_refused_until_one_is_deleted(tmp_path: Path, database_url: str) -> None:
    with client_of(settings_with(tmp_path, database_url, max_ssh_keys=2)) as client:
        dev = Actor(client, "developer")
        keys = [_public_key(tmp_path, f"k{i}") for i in range(3)]
        ids = []
        for i in range(2):
            resp = client.post(
                "/v1/ssh-keys", headers=dev.headers, json={"name": f"k{i}", "publicKey": keys[i]}
            )
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        third = {"name": "k2", "publicKey": keys[2]}
        assert_quota(client.post("/v1/ssh-keys", headers=dev.headers, json=third), 2, "SSH keys")
        assert len(client.get("/v1/ssh-keys", headers=dev.headers).json()["items"]) == 2
        assert client.delete(f"/v1/ssh-keys/{ids[0]}", headers=dev.headers).status_code == 204
        assert client.post("/v1/ssh-keys", headers=dev.headers, json=third).status_code == 201
