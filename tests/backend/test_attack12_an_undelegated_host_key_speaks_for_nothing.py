"""Attack (issue 12 review): the backend trusts a host key only through wallet ->
delegation -> key. A key whose delegation expired, or was dropped when the provider linked
another wallet (the remedy for a host taken over), must not keep its host online (its VMs
billed to their developers), move its address or answer for it, until the wallet delegates
it again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.host_keys import signing_address
from kumulus.backend.models import Host
from kumulus.core.delegation import delegation_text
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import (
    FULL_ISOLATION,
    Actor,
    link_wallet,
    register_payload,
)


def _beat(backend: TestClient, key: Keypair, host_id: str) -> int:
    payload = {"kind": "health", "hostId": host_id, "agentVersion": "0.1.0",
               "isolation": FULL_ISOLATION}  # fmt: skip
    env = sign_envelope(key, payload, domain=Domain.HEARTBEAT)
    return backend.post("/v1/hosts/heartbeat", json=env.model_dump()).status_code


def _move(backend: TestClient, key: Keypair, host_id: str) -> int:
    env = sign_envelope(
        key, {"kind": "ip", "hostId": host_id, "publicIp": "203.0.113.66"}, domain=Domain.HOST_IP
    )
    return backend.post("/v1/hosts/ip", json=env.model_dump()).status_code


def _delegate(backend: TestClient, wallet: Keypair, host_id: str, key: Keypair) -> int:
    text = delegation_text(host_id, key.ss58_address, utcnow() + timedelta(days=30))
    signature = "0x" + bytes(wallet.sign(text.encode())).hex()
    resp = backend.post("/v1/hosts/delegation", json={"message": text, "signature": signature})
    return resp.status_code


def _expire(backend: TestClient, provider: Actor, wallet: Keypair, host_id: str) -> Keypair:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        past = utcnow() - timedelta(seconds=1)
        db.execute(update(Host).where(Host.id == host_id).values(delegated_until=past))
        db.commit()
    return wallet


def _relink(backend: TestClient, provider: Actor, wallet: Keypair, host_id: str) -> Keypair:
    new_wallet = keypair_from_mnemonic(new_mnemonic())
    link_wallet(backend, provider, new_wallet)
    return new_wallet


@pytest.mark.parametrize("undelegate", [_expire, _relink], ids=["expired", "relinked"])
def test_a_host_key_without_a_standing_delegation_is_refused(
    backend: TestClient,
    provider: Actor,
    wallet: Keypair,
    undelegate: Callable[[TestClient, Actor, Keypair, str], Keypair],
) -> None:
    link_wallet(backend, provider, wallet)
    host_key = keypair_from_mnemonic(new_mnemonic())
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    env = sign_envelope(host_key, register_payload(token), domain=Domain.HOST_REGISTRATION)
    host_id = backend.post("/v1/hosts/register", json=env.model_dump()).json()["hostId"]
    assert _delegate(backend, wallet, host_id, host_key) == 200
    assert _beat(backend, host_key, host_id) == 202

    now_wallet = undelegate(backend, provider, wallet, host_id)

    assert _beat(backend, host_key, host_id) == 401
    assert _move(backend, host_key, host_id) in (401, 404)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host = db.get(Host, host_id)
        assert host is not None and host.public_ip != "203.0.113.66"
        assert signing_address(host) is None  # so its answers are refused
    # The wallet linked now delegates it again: it is heard again.
    assert _delegate(backend, now_wallet, host_id, host_key) == 200
    assert _beat(backend, host_key, host_id) == 202
    assert _move(backend, host_key, host_id) == 200
