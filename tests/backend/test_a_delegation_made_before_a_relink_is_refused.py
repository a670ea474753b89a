"""A re-link of the payout wallet revokes every host key delegation. A delegation says when
it was made, and the backend refuses one made before the wallet linked now: whoever saw an
old delegation (sent over plain http by an `--insecure-http` setup, say) cannot replay it
once the provider linked an earlier wallet back, or the same one again."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.backend.clock import travel, utcnow
from kumulus.backend.models import Host
from kumulus.core.delegation import default_expiry, delegation_text
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import (
    FULL_ISOLATION,
    Actor,
    delegate_host,
    link_wallet,
    register_payload,
)


def _pending_host(backend: TestClient, provider: Actor, host_key: Keypair) -> str:
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    env = sign_envelope(host_key, register_payload(token), domain=Domain.HOST_REGISTRATION)
    resp = backend.post("/v1/hosts/register", json=env.model_dump())
    assert resp.status_code == 201, resp.text
    return str(resp.json()["hostId"])


def _signed(wallet: Keypair, host_id: str, host_key: Keypair) -> dict[str, str]:
    now = utcnow()
    text = delegation_text(host_id, host_key.ss58_address, default_expiry(now), issued_at=now)
    return {"message": text, "signature": "0x" + bytes(wallet.sign(text.encode())).hex()}


def _beat(backend: TestClient, host_key: Keypair, host_id: str) -> int:
    payload = {"kind": "health", "hostId": host_id, "agentVersion": "0.1.0",
               "isolation": FULL_ISOLATION}  # fmt: skip
    env = sign_envelope(host_key, payload, domain=Domain.HEARTBEAT)
    return backend.post("/v1/hosts/heartbeat", json=env.model_dump()).status_code


def _state(backend: TestClient, host_id: str) -> str:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host = db.get(Host, host_id)
        assert host is not None
        return host.host_key_state


def test_an_old_delegation_is_refused_after_linking_the_earlier_wallet_back(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = _pending_host(backend, provider, host_key)
    seen = _signed(wallet, host_id, host_key)  # what a listener on the path kept
    assert backend.post("/v1/hosts/delegation", json=seen).status_code == 200
    with travel(timedelta(minutes=1)):
        link_wallet(backend, provider, keypair_from_mnemonic(new_mnemonic()))
        assert _state(backend, host_id) == "pending"
    with travel(timedelta(minutes=2)):
        link_wallet(backend, provider, wallet)  # the earlier wallet, back

        replayed = backend.post("/v1/hosts/delegation", json=seen)

        assert replayed.status_code == 401, replayed.text
        assert replayed.json()["code"] == "stale_delegation"
        assert "kumulus agent delegate" in replayed.json()["detail"]
        assert _state(backend, host_id) == "pending"
        assert _beat(backend, host_key, host_id) == 401  # still not heard
        fresh = delegate_host(backend, wallet, host_id, host_key, issued_at=utcnow())
        assert fresh.status_code == 200, fresh.text
        assert _state(backend, host_id) == "delegated"
        assert _beat(backend, host_key, host_id) == 202


def test_an_old_delegation_is_refused_after_linking_the_same_wallet_again(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = _pending_host(backend, provider, host_key)
    seen = _signed(wallet, host_id, host_key)
    assert backend.post("/v1/hosts/delegation", json=seen).status_code == 200
    with travel(timedelta(minutes=1)):
        link_wallet(backend, provider, wallet)  # revokes the delegations all the same
        assert _state(backend, host_id) == "pending"

        replayed = backend.post("/v1/hosts/delegation", json=seen)

        assert replayed.status_code == 401 and replayed.json()["code"] == "stale_delegation"
        assert _state(backend, host_id) == "pending"
