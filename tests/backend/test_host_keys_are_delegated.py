"""A host signs with a key of its own, registered with the one-time token as pending: it
takes VMs only once the provider's wallet delegated that key, until the delegation expires,
the provider revokes the key (its heartbeats are then refused) or re-links another wallet."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Host
from kumulus.core.delegation import delegation_text
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import FULL_ISOLATION, Actor, link_wallet, register_payload

VM = {"cpu": 1, "memory": "1g", "disk": "10g"}


def _register(backend: TestClient, provider: Actor, host_key: Keypair) -> str:
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    env = sign_envelope(host_key, register_payload(token), domain=Domain.HOST_REGISTRATION)
    resp = backend.post("/v1/hosts/register", json=env.model_dump())
    assert resp.status_code == 201 and resp.json()["hostKeyState"] == "pending", resp.text
    return str(resp.json()["hostId"])


def _beat(backend: TestClient, key: Keypair, host_id: str) -> int:
    payload = {
        "kind": "health",
        "hostId": host_id,
        "agentVersion": "0.1.0",
        "isolation": FULL_ISOLATION,  # only isolated hosts take VMs
    }
    env = sign_envelope(key, payload, domain=Domain.HEARTBEAT)
    return backend.post("/v1/hosts/heartbeat", json=env.model_dump()).status_code


def _placeable(backend: TestClient, developer: Actor) -> bool:
    resp = backend.post("/v1/vms/quote", headers=developer.headers, json=VM)
    assert resp.status_code in (200, 409), resp.text
    return resp.status_code == 200


def _delegate(backend: TestClient, provider: Actor, host_id: str, wallet: Keypair) -> int:
    """As the console does: the text from the API, signed by the wallet's extension."""
    text = backend.get(f"/v1/provider/hosts/{host_id}/delegation", headers=provider.headers)
    message = text.json()["message"]
    signature = "0x" + bytes(wallet.sign(b"<Bytes>" + message.encode() + b"</Bytes>")).hex()
    resp = backend.post("/v1/hosts/delegation", json={"message": message, "signature": signature})
    return resp.status_code


def _state(backend: TestClient, provider: Actor, host_id: str) -> str:
    view = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
    return str(view["hostKeyState"])


def test_a_host_takes_vms_only_once_its_key_is_delegated(
    backend: TestClient, provider: Actor, developer: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_key = keypair_from_mnemonic(new_mnemonic())
    host_id = _register(backend, provider, host_key)
    assert _beat(backend, host_key, host_id) == 401  # no wallet stands behind its key yet
    assert _beat(backend, wallet, host_id) == 404  # the wallet no longer speaks for it
    assert not _placeable(backend, developer)
    stranger = keypair_from_mnemonic(new_mnemonic())
    assert _delegate(backend, provider, host_id, stranger) == 401
    assert _delegate(backend, provider, host_id, wallet) == 200
    assert _state(backend, provider, host_id) == "delegated"
    assert _beat(backend, host_key, host_id) == 202  # heard from its delegated key
    assert _placeable(backend, developer)


def test_a_delegation_names_the_registered_key_and_a_bounded_future(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = _register(backend, provider, keypair_from_mnemonic(new_mnemonic()))
    other = keypair_from_mnemonic(new_mnemonic()).ss58_address
    for until, status in [
        (utcnow() + timedelta(days=30), 409),  # another key than the host registered
        (utcnow() - timedelta(minutes=1), 422),
        (utcnow() + timedelta(days=3 * 365), 422),
    ]:
        message = delegation_text(host_id, other, until)
        signature = "0x" + bytes(wallet.sign(message.encode())).hex()
        resp = backend.post(
            "/v1/hosts/delegation", json={"message": message, "signature": signature}
        )
        assert resp.status_code == status, resp.text
    assert _state(backend, provider, host_id) == "pending"


def test_an_expired_delegation_takes_no_vms(
    backend: TestClient, provider: Actor, developer: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_key = keypair_from_mnemonic(new_mnemonic())
    host_id = _register(backend, provider, host_key)
    assert _delegate(backend, provider, host_id, wallet) == 200
    assert _beat(backend, host_key, host_id) == 202 and _placeable(backend, developer)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        past = utcnow() - timedelta(seconds=1)
        db.execute(update(Host).where(Host.id == host_id).values(delegated_until=past))
        db.commit()
    assert not _placeable(backend, developer)
    assert _delegate(backend, provider, host_id, wallet) == 200  # renewed
    assert _placeable(backend, developer)


def test_a_revoked_host_key_is_refused_and_takes_no_vms(
    backend: TestClient, provider: Actor, developer: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_key = keypair_from_mnemonic(new_mnemonic())
    host_id = _register(backend, provider, host_key)
    assert _delegate(backend, provider, host_id, wallet) == 200
    assert _beat(backend, host_key, host_id) == 202 and _placeable(backend, developer)
    revoked = backend.post(f"/v1/provider/hosts/{host_id}/revoke-key", headers=provider.headers)
    assert revoked.status_code == 200 and revoked.json()["hostKeyState"] == "revoked"
    assert _beat(backend, host_key, host_id) == 401
    assert not _placeable(backend, developer)
    shown = backend.get(f"/v1/provider/hosts/{host_id}/delegation", headers=provider.headers)
    assert shown.json()["message"] is None  # nothing to sign any more
    again = delegation_text(host_id, host_key.ss58_address, utcnow() + timedelta(days=30))
    signature = "0x" + bytes(wallet.sign(again.encode())).hex()
    resp = backend.post("/v1/hosts/delegation", json={"message": again, "signature": signature})
    assert resp.status_code == 409  # for good


def test_relinking_the_wallet_revokes_every_delegation(
    backend: TestClient, provider: Actor, developer: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_key = keypair_from_mnemonic(new_mnemonic())
    host_id = _register(backend, provider, host_key)
    assert _delegate(backend, provider, host_id, wallet) == 200
    assert _beat(backend, host_key, host_id) == 202 and _placeable(backend, developer)
    new_wallet = keypair_from_mnemonic(new_mnemonic())
    link_wallet(backend, provider, new_wallet)
    assert _state(backend, provider, host_id) == "pending"
    assert not _placeable(backend, developer)
    assert _delegate(backend, provider, host_id, wallet) == 401  # the old wallet: no more
    assert _delegate(backend, provider, host_id, new_wallet) == 200
    assert _placeable(backend, developer)
