"""The account page shows each token's expiry, logs out everywhere else (this browser
stays logged in) and changes the password (the current one required; other sessions and
tokens revoked)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.console.conftest import csrf_of, signup

PASSWORD = "correct horse battery"


def _api_token(server: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    resp = server.post("/v1/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def test_revoke_all_from_the_console(server: TestClient) -> None:
    signup(server, "dev@example.com")
    cli = _api_token(server, "dev@example.com")
    page = server.get("/console/account").text
    assert re.search(r'data-label="Expires">\d{4}-\d\d-\d\d \d\d:\d\d UTC<', page)
    resp = server.post(
        "/console/account/revoke-all", data={"csrf": csrf_of(server, "/console/account")}
    )
    assert resp.status_code == 200 and "Logged out everywhere else: 1 revoked." in resp.text
    assert server.get("/v1/me", headers=cli).status_code == 401
    assert server.get("/console/account", follow_redirects=False).status_code == 200  # still in


def test_password_change_from_the_console(server: TestClient) -> None:
    signup(server, "dev@example.com")
    cli = _api_token(server, "dev@example.com")
    csrf = csrf_of(server, "/console/account")
    wrong = server.post(
        "/console/account/password",
        data={"csrf": csrf, "current_password": "guess guess guess", "new_password": "x" * 12},
    )
    assert wrong.status_code == 403 and "wrong password" in wrong.text
    assert server.get("/v1/me", headers=cli).status_code == 200
    done = server.post(
        "/console/account/password",
        data={"csrf": csrf, "current_password": PASSWORD, "new_password": "new passphrase 42"},
    )
    assert done.status_code == 200 and "Password changed; 1 other" in done.text
    assert server.get("/v1/me", headers=cli).status_code == 401
    assert server.get("/console/account", follow_redirects=False).status_code == 200
    old = server.post("/v1/auth/login", json={"email": "dev@example.com", "password": PASSWORD})
    assert old.status_code == 401
    _api_token(server, "dev@example.com", "new passphrase 42")
