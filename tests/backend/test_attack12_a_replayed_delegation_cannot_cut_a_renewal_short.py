"""Attack (issue 12 review): `POST /v1/hosts/delegation` is open (the wallet's signature is
the authentication), so anyone who once saw a delegation (sent over plain http by
`--insecure-http` setups, say) can send it again. After the provider renewed a host's
delegation, replaying the older, shorter one must not bring its expiry back: the host would
fall silent (and its VMs go unbilled) months early."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import Host
from kumulus.core.delegation import delegation_text
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_payload


def _signed(wallet: Keypair, host_id: str, key: str, days: int) -> dict[str, str]:
    until = (utcnow() + timedelta(days=days)).replace(microsecond=0)
    text = delegation_text(host_id, key, until)
    return {"message": text, "signature": "0x" + bytes(wallet.sign(text.encode())).hex()}


def test_a_replayed_older_delegation_does_not_shorten_the_renewed_one(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_key = keypair_from_mnemonic(new_mnemonic())
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    env = sign_envelope(host_key, register_payload(token), domain=Domain.HOST_REGISTRATION)
    host_id = backend.post("/v1/hosts/register", json=env.model_dump()).json()["hostId"]
    first = _signed(wallet, host_id, host_key.ss58_address, days=30)
    renewal = _signed(wallet, host_id, host_key.ss58_address, days=365)
    assert backend.post("/v1/hosts/delegation", json=first).status_code == 200
    assert backend.post("/v1/hosts/delegation", json=renewal).status_code == 200

    replayed = backend.post("/v1/hosts/delegation", json=first)

    assert replayed.status_code == 409, replayed.text
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host = db.get(Host, host_id)
        assert host is not None and host.delegated_until is not None
        assert aware(host.delegated_until) > utcnow() + timedelta(days=300)
        assert host.delegation == renewal["message"]
