"""Attack (issue 12 review): a `legacy` host signs with the wallet stored on it. When that
host is taken over, the wallet is the thief's, and the provider's remedy is to link another
wallet. The old wallet must then speak for none of the provider's hosts: no heartbeat, no
address change, no VM placed there, no answer accepted."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.host_keys import signing_address
from kumulus.backend.models import Host
from kumulus.core.delegation import delegation_text
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import FULL_ISOLATION, Actor, legacy_host, link_wallet

VM = {"cpu": 1, "memory": "1g", "disk": "10g"}


def _beat(backend: TestClient, key: Keypair, host_id: str) -> int:
    payload = {"kind": "health", "hostId": host_id, "agentVersion": "0.1.0",
               "isolation": FULL_ISOLATION}  # fmt: skip
    env = sign_envelope(key, payload, domain=Domain.HEARTBEAT)
    return backend.post("/v1/hosts/heartbeat", json=env.model_dump()).status_code


def test_relinking_the_wallet_cuts_off_the_old_wallet_on_legacy_hosts(
    backend: TestClient, provider: Actor, developer: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = legacy_host(backend, provider, wallet)  # signs with the wallet
    assert _beat(backend, wallet, host_id) == 202
    assert backend.post("/v1/vms/quote", headers=developer.headers, json=VM).status_code == 200

    new_wallet = keypair_from_mnemonic(new_mnemonic())
    link_wallet(backend, provider, new_wallet)  # the remedy

    assert _beat(backend, wallet, host_id) in (401, 404)
    moved = sign_envelope(
        wallet, {"kind": "ip", "hostId": host_id, "publicIp": "203.0.113.66"},
        domain=Domain.HOST_IP,
    )  # fmt: skip
    assert backend.post("/v1/hosts/ip", json=moved.model_dump()).status_code in (401, 404)
    assert backend.post("/v1/vms/quote", headers=developer.headers, json=VM).status_code == 409
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host = db.get(Host, host_id)
        assert host is not None and host.public_ip != "203.0.113.66"
        assert signing_address(host) != wallet.ss58_address  # its answers are refused too

    # The provider moves the host onto a key of its own, delegated by the new wallet
    # (`kumulus agent delegate` on the host); the old wallet cannot.
    host_key = keypair_from_mnemonic(new_mnemonic())
    text = delegation_text(host_id, host_key.ss58_address, utcnow() + timedelta(days=30))
    for signer, status in ((wallet, 401), (new_wallet, 200)):
        signature = "0x" + bytes(signer.sign(text.encode())).hex()
        resp = backend.post("/v1/hosts/delegation", json={"message": text, "signature": signature})
        assert resp.status_code == status, resp.text
    assert _beat(backend, host_key, host_id) == 202
    assert backend.post("/v1/vms/quote", headers=developer.headers, json=VM).status_code == 200
