"""No wallet key on any host: a new host registers with a key of its own, which the wallet
then delegates. A registration signed by the provider's wallet itself is refused (403, with
how to set the host up instead) and spends neither the one-time token nor anything else;
hosts registered so before host keys go on being heard until their setup moves them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from substrateinterface import Keypair

from kumulus.backend.models import Host, HostToken
from kumulus.core.signing import Domain, sign_envelope
from tests.backend.conftest import (
    FULL_ISOLATION,
    Actor,
    legacy_host,
    link_wallet,
    register_payload,
)


def test_a_registration_signed_by_the_wallet_is_refused_and_spends_nothing(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    by_wallet = sign_envelope(wallet, register_payload(token), domain=Domain.HOST_REGISTRATION)

    refused = backend.post("/v1/hosts/register", json=by_wallet.model_dump())

    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "wallet_signed"
    assert "key of its own" in refused.json()["detail"]
    assert "provider-setup.sh" in refused.json()["detail"]
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        assert db.scalar(select(func.count()).select_from(Host)) == 0
        assert db.scalar(select(HostToken.used_at)) is None
    by_key = sign_envelope(host_key, register_payload(token), domain=Domain.HOST_REGISTRATION)
    ok = backend.post("/v1/hosts/register", json=by_key.model_dump())
    assert ok.status_code == 201 and ok.json()["hostKeyState"] == "pending", ok.text


def test_a_host_registered_with_the_wallet_before_host_keys_is_still_heard(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = legacy_host(backend, provider, wallet)
    payload = {"kind": "health", "hostId": host_id, "agentVersion": "0.1.0",
               "isolation": FULL_ISOLATION}  # fmt: skip
    beat = sign_envelope(wallet, payload, domain=Domain.HEARTBEAT)

    assert backend.post("/v1/hosts/heartbeat", json=beat.model_dump()).status_code == 202

    view = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
    assert view["hostKeyState"] == "legacy" and view["status"] == "online"
