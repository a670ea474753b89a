"""Every endpoint: anonymous -> 401, wrong role -> 403, another owner's resource -> 404."""

import pytest
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from tests.backend.conftest import Actor, link_wallet, register_host

ACCOUNT_ROUTES = [
    ("GET", "/v1/me"),
    ("GET", "/v1/tokens"),
    ("POST", "/v1/tokens"),
    ("DELETE", "/v1/tokens/1"),
]
PROVIDER_ROUTES = [
    ("GET", "/v1/provider/profile"),
    ("PUT", "/v1/provider/profile"),
    ("POST", "/v1/provider/wallet/challenge"),
    ("POST", "/v1/provider/wallet/link"),
    ("POST", "/v1/provider/host-tokens"),
    ("GET", "/v1/provider/hosts"),
    ("GET", "/v1/provider/hosts/abc"),
]


@pytest.mark.parametrize(("method", "path"), ACCOUNT_ROUTES + PROVIDER_ROUTES)
def test_anonymous_gets_401(backend: TestClient, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer kmt_not-a-token"}, {"Authorization": "Basic x"}):
        resp = backend.request(method, path, headers=headers, json={})
        assert resp.status_code == 401, (path, resp.text)


@pytest.mark.parametrize(("method", "path"), PROVIDER_ROUTES)
def test_developers_cannot_use_provider_routes(
    backend: TestClient, developer: Actor, method: str, path: str
) -> None:
    assert backend.request(method, path, headers=developer.headers, json={}).status_code == 403


def test_hosts_of_another_provider_are_404(
    backend: TestClient,
    provider: Actor,
    other_provider: Actor,
    wallet: Keypair,
    host_key: Keypair,
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    assert backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).status_code == 200
    assert (
        backend.get(f"/v1/provider/hosts/{host_id}", headers=other_provider.headers).status_code
        == 404
    )
    assert backend.get("/v1/provider/hosts", headers=other_provider.headers).json()["items"] == []
