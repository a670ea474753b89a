"""Every operation that can answer 429 declares it, with Retry-After: the authenticated
ones (per-token rate), log-in, sign-up and heartbeats; operations that count nothing do
not."""

from __future__ import annotations

from fastapi.testclient import TestClient

LIMITED = [
    ("post", "/v1/auth/login"),
    ("post", "/v1/auth/signup"),
    ("post", "/v1/hosts/heartbeat"),
    ("get", "/v1/me"),  # and every other operation behind a token:
    ("post", "/v1/tokens"),
    ("get", "/v1/vms"),
    ("post", "/v1/vms"),
    ("post", "/v1/ssh-keys"),
    ("post", "/v1/provider/host-tokens"),
    ("get", "/v1/billing"),
]
UNLIMITED = [("get", "/healthz"), ("get", "/provider-setup.sh"), ("post", "/v1/hosts/token-info")]


def test_429_is_declared_exactly_where_it_can_happen(backend: TestClient) -> None:
    spec = backend.get("/openapi.json").json()
    for method, path in LIMITED:
        response = spec["paths"][path][method]["responses"].get("429")
        assert response is not None, (method, path)
        assert "Retry-After" in response["headers"]
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    for method, path in UNLIMITED:
        assert "429" not in spec["paths"][path][method]["responses"], (method, path)
