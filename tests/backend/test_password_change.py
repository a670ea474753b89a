"""Changing the password needs the current one; afterwards the old password no longer
logs in and every other token of the account is revoked (the caller's is kept)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.backend.conftest import Actor

NEW = "a much longer new passphrase"


def _login(client: TestClient, email: str, password: str) -> int:
    return client.post("/v1/auth/login", json={"email": email, "password": password}).status_code


def test_password_change(backend: TestClient) -> None:
    actor = Actor(backend, "provider")
    other = backend.post(
        "/v1/auth/login", json={"email": actor.email, "password": actor.password}
    ).json()["token"]
    other_headers = {"Authorization": f"Bearer {other}"}

    wrong = backend.post(
        "/v1/auth/password",
        json={"currentPassword": "not the password", "newPassword": NEW},
        headers=actor.headers,
    )
    assert wrong.status_code == 403 and wrong.json()["code"] == "wrong_password"
    assert backend.get("/v1/me", headers=other_headers).status_code == 200  # nothing changed
    short = backend.post(
        "/v1/auth/password",
        json={"currentPassword": actor.password, "newPassword": "short"},
        headers=actor.headers,
    )
    assert short.status_code == 422
    assert _login(backend, actor.email, actor.password) == 200

    done = backend.post(
        "/v1/auth/password",
        json={"currentPassword": actor.password, "newPassword": NEW},
        headers=actor.headers,
    )
    assert done.status_code == 200 and done.json()["revoked"] == 2  # `other` and that login
    assert _login(backend, actor.email, actor.password) == 401
    assert _login(backend, actor.email, NEW) == 200
    assert backend.get("/v1/me", headers=other_headers).status_code == 401
    assert backend.get("/v1/me", headers=actor.headers).status_code == 200


def test_password_change_needs_a_token(backend: TestClient) -> None:
    resp = backend.post("/v1/auth/password", json={"currentPassword": "x" * 10, "newPassword": NEW})
    assert resp.status_code == 401
