"""Every authenticated API call counts against its token's rate (in memory, per backend
process); one token over it does not slow the account's other tokens."""

from __future__ import annotations

from pathlib import Path

from tests.backend.limits_fixtures import (
    assert_rate_limited,
    client_of,
    login,
    settings_with,
    signup,
)


def test_a_token_past_its_rate_gets_429_and_another_token_does_not(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, api_rate_per_token="5/minute")
    with client_of(settings) as client:
        assert signup(client, "busy@example.com").status_code == 201
        first = {"Authorization": f"Bearer {login(client, 'busy@example.com').json()['token']}"}
        second = {"Authorization": f"Bearer {login(client, 'busy@example.com').json()['token']}"}
        for _ in range(5):
            assert client.get("/v1/me", headers=first).status_code == 200
        assert_rate_limited(client.get("/v1/ssh-keys", headers=first), "calls with this token")
        assert client.get("/v1/me", headers=second).status_code == 200
        # Unauthenticated calls are not counted against anyone's token.
        assert client.get("/v1/me").status_code == 401
