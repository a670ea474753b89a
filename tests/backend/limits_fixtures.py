"""Apps with small limits, for the tests whose subject is a limit (every other test runs
with the generous limits of tests/limits.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from kumulus.backend.app import create_app
from kumulus.config import BackendSettings
from tests.generous_limits import GENEROUS_LIMITS

PASSWORD = "correct horse battery"


def settings_with(
    tmp_path: Path, database_url: str | None = None, **limits: Any
) -> BackendSettings:
    """SQLite in `tmp_path` unless `database_url` is given."""
    return BackendSettings(
        data_dir=tmp_path / "backend",
        KUMULUS_DATABASE_URL=database_url,
        signup_credit="10",
        **{**GENEROUS_LIMITS, **limits},
    )


@contextmanager
def client_of(settings: BackendSettings, ip: str = "203.0.113.7") -> Iterator[TestClient]:
    """The backend app as seen from `ip` (the TCP peer)."""
    with TestClient(create_app(settings), client=(ip, 40000)) as client:
        yield client


def signup(client: TestClient, email: str, role: str = "developer") -> Any:
    return client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD, "role": role})


def login(client: TestClient, email: str, password: str = PASSWORD, **headers: str) -> Any:
    return client.post(
        "/v1/auth/login", json={"email": email, "password": password}, headers=headers
    )


def assert_rate_limited(resp: Any, what: str) -> None:
    """A 429 in the platform's error body, with a Retry-After a client can use."""
    assert resp.status_code == 429, resp.text
    body = resp.json()
    assert body["code"] == "rate_limited" and body["retry"] is True, body
    assert what in body["detail"], body
    assert 1 <= int(resp.headers["Retry-After"]) <= 3600, resp.headers
