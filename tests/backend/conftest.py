"""Backend fixtures: the real app on SQLite and, where a server is configured
(KUMULUS_TEST_POSTGRES_URL, set by scripts/setup.sh test), on PostgreSQL too."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from substrateinterface import Keypair

from kumulus.backend.app import create_app
from kumulus.backend.clock import utcnow
from kumulus.backend.host_keys import LEGACY
from kumulus.backend.hosts import starting_prices
from kumulus.backend.models import Host, ProviderProfile
from kumulus.config import BackendSettings
from kumulus.core.delegation import default_expiry, delegation_text
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


@pytest.fixture
def host_key() -> Keypair:
    """A host's own key, as `kumulus agent host-key` makes it."""
    return keypair_from_mnemonic(new_mnemonic())


def delegate_host(
    client: TestClient,
    wallet: Keypair,
    host_id: str,
    host_key: Keypair,
    expires_at: datetime | None = None,
    issued_at: datetime | None = None,
) -> Response:
    """`kumulus agent delegate`: the wallet signs the delegation of `host_key` (made at
    `issued_at`, now by default, for a year unless `expires_at`) and the host sends it."""
    message = delegation_text(
        host_id, host_key.ss58_address, expires_at or default_expiry(), issued_at
    )
    signature = "0x" + bytes(wallet.sign(message.encode())).hex()
    return client.post("/v1/hosts/delegation", json={"message": message, "signature": signature})


def register_host(
    client: TestClient, actor: Actor, wallet: Keypair, host_key: Keypair | None = None
) -> str:
    """A host as setup adds one: registered with its own key (`host_key`, else a new one,
    for a test that never speaks as the host) and a one-time token, then its key delegated
    by the provider's `wallet`. Returns its id."""
    host_key = host_key or keypair_from_mnemonic(new_mnemonic())
    token = client.post("/v1/provider/host-tokens", headers=actor.headers).json()["token"]
    env = sign_envelope(host_key, register_payload(token), domain=Domain.HOST_REGISTRATION)
    resp = client.post("/v1/hosts/register", json=env.model_dump())
    assert resp.status_code == 201, resp.text
    host_id = str(resp.json()["hostId"])
    delegated = delegate_host(client, wallet, host_id, host_key)
    assert delegated.status_code == 200, delegated.text
    return host_id


def legacy_host(client: TestClient, actor: Actor, wallet: Keypair) -> str:
    """A host registered before host keys, signing with the `wallet` stored on it. No host
    registers so any more (only their migration matters), so its row is written directly,
    as that registration left it. Returns its id."""
    app = client.app
    with app.state.db.session() as db:  # type: ignore[attr-defined]
        profile = db.get(ProviderProfile, actor.id)
        assert profile is not None and profile.wallet_address == wallet.ss58_address
        payload = register_payload("unused")
        host = Host(
            id=secrets.token_hex(8),
            account_id=actor.id,
            wallet_address=wallet.ss58_address,
            host_key=None,
            host_key_state=LEGACY,
            api_url=payload["apiUrl"],
            public_ip=payload["publicIp"],
            cpu=payload["capacity"]["cpu"],
            memory=payload["capacity"]["memory"],
            disk=payload["capacity"]["disk"],
            disk_quota=True,
            isolated=True,
            agent_version=payload["agentVersion"],
            registered_at=utcnow(),
        )
        host.set_prices(*starting_prices(app.state.settings, profile))  # type: ignore[attr-defined]
        db.add(host)
        db.commit()
        return host.id
