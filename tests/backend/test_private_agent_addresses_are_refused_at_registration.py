"""A host whose `apiUrl` is plainly not public (an IP literal that is not, localhost) is
refused at registration, 422 naming the field, unless the backend allows private agents;
a DNS name is accepted there and checked on every call instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.config import BackendSettings
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_payload


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kumulus.db'}"


@pytest.fixture
def backend_settings(tmp_path: Path, database_url: str) -> BackendSettings:
    return BackendSettings(
        data_dir=tmp_path / "backend", KUMULUS_DATABASE_URL=database_url,
        allow_private_agents=False,
    )  # fmt: skip


PRIVATE = [
    "http://169.254.169.254:80",
    "http://127.0.0.1:8000",
    "http://localhost:8000",
    "http://[::1]:8000",
    "http://10.0.0.7:8000",
    "https://[::ffff:192.168.1.1]",
]


def _register(backend: TestClient, provider: Actor, wallet: Keypair, api_url: str) -> int:
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    payload = register_payload(token, apiUrl=api_url)
    # Signed by a host key of its own, as every new host registers (wallet ones are refused).
    host_key = keypair_from_mnemonic(new_mnemonic())
    env = sign_envelope(host_key, payload, domain=Domain.HOST_REGISTRATION)
    resp = backend.post("/v1/hosts/register", json=env.model_dump())
    if resp.status_code == 422:
        assert resp.json()["fields"][0]["loc"][-1] == "apiUrl", resp.text
    return resp.status_code


def test_private_agent_addresses_are_refused(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    for url in PRIVATE:
        assert _register(backend, provider, wallet, url) == 422, url
    assert _register(backend, provider, wallet, "https://agent.example.com:8443") == 201
    assert _register(backend, provider, wallet, "http://93.184.216.34:8000") == 201
