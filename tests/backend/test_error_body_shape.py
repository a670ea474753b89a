"""Every 4xx/5xx of the backend API is one ErrorBody: {detail, code, retry, fields}."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from kumulus.core.schemas import ErrorBody
from tests.backend.conftest import Actor


def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    ErrorBody.model_validate(body)  # exactly the declared shape
    assert set(body) == {"detail", "code", "retry", "fields"}
    assert body["code"] == code and body["detail"]
    return dict(body)


def test_unauthenticated_is_401_with_the_body(backend: TestClient) -> None:
    body = _error(backend.get("/v1/vms"), 401, "unauthorized")
    assert body["retry"] is False and body["fields"] is None
    assert backend.get("/v1/vms").headers["www-authenticate"] == "Bearer"


def test_validation_errors_list_their_fields(backend: TestClient, developer: Actor) -> None:
    resp = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "root", "cpu": 9999, "memory": "lots", "sshKey": "x"},
    )
    body = _error(resp, 422, "invalid")
    locs = {tuple(f["loc"]) for f in body["fields"]}
    assert {("body", "cpu"), ("body", "memory"), ("body", "username")} <= locs
    assert all(f["msg"] for f in body["fields"])
    assert "cpu" in body["detail"] and "memory" in body["detail"]  # readable sentence


def test_service_errors_carry_their_code(backend: TestClient, developer: Actor) -> None:
    _error(backend.get("/v1/vms/0123456789abcdef", headers=developer.headers), 404, "not_found")
    _error(backend.get("/v1/provider/hosts", headers=developer.headers), 403, "forbidden")
    body = _error(
        backend.post("/v1/auth/login", json={"email": developer.email, "password": "wrong!"}),
        401,
        "bad_credentials",
    )
    assert body["retry"] is False


def test_no_host_fits_is_409_conflict(backend: TestClient, developer: Actor) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    resp = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "dev", "cpu": 1, "memory": "1g", "sshKey": key},
    )
    assert _error(resp, 409, "no_host_fits")["retry"] is False


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/no-such-thing", 404, "not_found"),
        ("PUT", "/v1/auth/login", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_have_the_body(
    backend: TestClient, method: str, path: str, status: int, code: str
) -> None:
    _error(backend.request(method, path), status, code)


def test_a_bug_is_a_500_body_without_internals(backend: TestClient) -> None:
    app = backend.app

    @app.get("/v1/test-bug")  # type: ignore[attr-defined,misc]
    def bug() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    with TestClient(app, raise_server_exceptions=False) as client:
        body = _error(client.get("/v1/test-bug"), 500, "internal")
    assert "secret" not in body["detail"] and body["retry"] is True
