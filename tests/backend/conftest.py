"""Backend fixtures: the real app on SQLite and, where a server is configured
(KUMULUS_TEST_POSTGRES_URL, set by scripts/setup.sh test), on PostgreSQL too."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.backend.app import create_app
from kumulus.config import BackendSettings
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.generous_limits import GENEROUS_LIMITS


@pytest.fixture
def backend_settings(tmp_path: Path, database_url: str) -> BackendSettings:
    # By its alias: `database_url=` is ignored (the field is read as KUMULUS_DATABASE_URL),
    # which left every "postgresql" test on SQLite.
    return BackendSettings(
        data_dir=tmp_path / "backend",
        KUMULUS_DATABASE_URL=database_url,
        heartbeat_ttl=30,
        signup_credit="10",  # production gives none; tests create VMs without depositing
        **GENEROUS_LIMITS,  # a test of a limit sets its own (tests/backend/limits_fixtures.py)
    )


@pytest.fixture
def backend(backend_settings: BackendSettings) -> Iterator[TestClient]:
    with TestClient(create_app(backend_settings)) as client:
        yield client


class Actor:
    """A signed-up account with its API token."""

    def __init__(self, client: TestClient, role: str) -> None:
        self.email = f"{role}-{secrets.token_hex(4)}@example.com"
        self.password = "correct horse battery"
        resp = client.post(
            "/v1/auth/signup", json={"email": self.email, "password": self.password, "role": role}
        )
        assert resp.status_code == 201, resp.text
        self.id = resp.json()["id"]
        login = client.post("/v1/auth/login", json={"email": self.email, "password": self.password})
        self.token = login.json()["token"]
        # VM changes answer once recorded; these tests look at what the host did, so they
        # wait for it (RFC 7240), as a script would. test_vm_intents_converge.py covers
        # the answers without waiting.
        self.headers = {"Authorization": f"Bearer {self.token}", "Prefer": "wait=60"}


@pytest.fixture
def provider(backend: TestClient) -> Actor:
    return Actor(backend, "provider")


@pytest.fixture
def other_provider(backend: TestClient) -> Actor:
    return Actor(backend, "provider")


@pytest.fixture
def developer(backend: TestClient) -> Actor:
    return Actor(backend, "developer")


@pytest.fixture
def wallet() -> Keypair:
    return keypair_from_mnemonic(new_mnemonic())


def link_wallet(client: TestClient, actor: Actor, wallet: Keypair, wrap: bool = False) -> None:
    challenge = client.post("/v1/provider/wallet/challenge", headers=actor.headers).json()
    message = challenge["message"].encode()
    signed = b"<Bytes>" + message + b"</Bytes>" if wrap else message
    resp = client.post(
        "/v1/provider/wallet/link",
        headers=actor.headers,
        json={
            "challengeId": challenge["challengeId"],
            "address": wallet.ss58_address,
            "signature": "0x" + bytes(wallet.sign(signed)).hex(),
            "password": actor.password,  # needed to replace a linked wallet
        },
    )
    assert resp.status_code == 200, resp.text


# What a host set up by provider-setup.sh reports (kumulus.core.schemas.IsolationReport).
FULL_ISOLATION = {
    "level": "full",
    "missing": [],
    "usernsRemap": True,
    "firewall": True,
    "diskQuota": True,
    "ioLimits": True,
    "smtpBlocked": True,
    "detail": "",
}


def register_payload(token: str, **over: Any) -> dict[str, Any]:
    return {
        "kind": "register",
        "providerToken": token,
        "apiUrl": "http://127.0.0.1:8000",
        "publicIp": "127.0.0.1",
        "capacity": {"cpu": 4, "memory": 8 << 30, "disk": 100 << 30},
        "diskQuota": True,
        "agentVersion": "0.1.0",
        "isolation": FULL_ISOLATION,
        **over,
    }


def register_host(client: TestClient, actor: Actor, wallet: Keypair) -> str:
    token = client.post("/v1/provider/host-tokens", headers=actor.headers).json()["token"]
    env = sign_envelope(wallet, register_payload(token), domain=Domain.HOST_REGISTRATION)
    resp = client.post("/v1/hosts/register", json=env.model_dump())
    assert resp.status_code == 201, resp.text
    return str(resp.json()["hostId"])
