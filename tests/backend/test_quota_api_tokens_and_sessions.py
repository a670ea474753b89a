"""Tokens made on purpose are capped at `max_api_tokens` live ones (409 beyond); log-ins
never fail for a quota: past `max_sessions` live log-in tokens, the least recently used is
revoked."""

from __future__ import annotations

from pathlib import Path

from tests.backend.conftest import Actor
from tests.backend.limits_fixtures import client_of, login, settings_with
from tests.backend.test_quota_ssh_keys import assert_quota


def test_made_tokens_are_capped_and_logins_evict_the_least_recently_used(
    tmp_path: Path, database_url: str
) -> None:
    settings = settings_with(tmp_path, database_url, max_api_tokens=2, max_sessions=2)
    with client_of(settings) as client:
        dev = Actor(client, "developer")  # its log-in token is session 1
        for name in ("ci", "laptop"):
            made = client.post("/v1/tokens", headers=dev.headers, json={"name": name})
            assert made.status_code == 201, made.text
        assert_quota(
            client.post("/v1/tokens", headers=dev.headers, json={"name": "one more"}),
            2,
            "API tokens",
        )
        # Revoking one makes room.
        tokens = client.get("/v1/tokens", headers=dev.headers).json()["items"]
        ci = next(t for t in tokens if t["name"] == "ci")
        assert client.delete(f"/v1/tokens/{ci['id']}", headers=dev.headers).status_code == 204
        assert (
            client.post("/v1/tokens", headers=dev.headers, json={"name": "ci2"}).status_code == 201
        )

        second = login(client, dev.email).json()["token"]
        client.get("/v1/me", headers={"Authorization": f"Bearer {second}"})
        third = login(client, dev.email)  # a third session: the least recently used goes
        assert third.status_code == 200
        assert client.get("/v1/me", headers=dev.headers).status_code == 401  # session 1
        for token in (second, third.json()["token"]):
            assert (
                client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code
                == 200
            )
        live = [
            t
            for t in client.get("/v1/tokens", headers={"Authorization": f"Bearer {second}"}).json()[
                "items"
            ]
            if t["revokedAt"] is None
        ]
        assert sorted(t["name"] for t in live) == ["ci2", "laptop", "login", "login"]
