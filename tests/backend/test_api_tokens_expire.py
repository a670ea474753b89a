"""API tokens expire: the log-in answer and the token list say when (90 days by default,
`api_token_ttl`), and a token past it is refused with 401 like a revoked one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from kumulus.backend.app import create_app
from kumulus.backend.clock import travel, utcnow
from kumulus.config import BackendSettings
from tests.backend.conftest import Actor


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_login_and_token_list_show_the_expiry(backend: TestClient) -> None:
    actor = Actor(backend, "developer")
    login = backend.post("/v1/auth/login", json={"email": actor.email, "password": actor.password})
    expires = _at(login.json()["expiresAt"])
    assert abs(expires - (utcnow() + timedelta(days=90))) < timedelta(minutes=1)
    made = backend.post("/v1/tokens", json={"name": "ci"}, headers=actor.headers).json()
    assert abs(_at(made["expiresAt"]) - (utcnow() + timedelta(days=90))) < timedelta(minutes=1)
    listed = backend.get("/v1/tokens", headers=actor.headers).json()["items"]
    assert len(listed) == 3 and all(_at(t["expiresAt"]) > utcnow() for t in listed)


@pytest.fixture
def hour_tokens(backend_settings: BackendSettings) -> Iterator[TestClient]:
    with TestClient(create_app(backend_settings.model_copy(update={"api_token_ttl": 3600}))) as c:
        yield c


def test_an_expired_token_is_refused(hour_tokens: TestClient) -> None:
    actor = Actor(hour_tokens, "developer")
    assert hour_tokens.get("/v1/me", headers=actor.headers).status_code == 200
    with travel(timedelta(minutes=59)):
        assert hour_tokens.get("/v1/me", headers=actor.headers).status_code == 200
    with travel(timedelta(hours=1, seconds=1)):
        resp = hour_tokens.get("/v1/me", headers=actor.headers)
        assert resp.status_code == 401 and "expired" in resp.json()["detail"]
        again = hour_tokens.post(
            "/v1/auth/login", json={"email": actor.email, "password": actor.password}
        )
        fresh = {"Authorization": f"Bearer {again.json()['token']}"}
        assert hour_tokens.get("/v1/me", headers=fresh).status_code == 200
