"""Each agent-facing endpoint takes envelopes of its own kind only, signed over their exact
bytes: an envelope of another kind (same key, same payload) or a `<Bytes>`-wrapped
signature (what a browser extension makes) is refused with 401 and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.core.signing import ENVELOPE_DOMAINS, Domain, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host, register_payload
from tests.wallet_extension import ExtensionSigner


def _state(backend: TestClient, provider: Actor) -> list[dict[str, Any]]:
    resp = backend.get("/v1/provider/hosts", headers=provider.headers)
    assert resp.status_code == 200
    return [{k: h[k] for k in ("id", "publicIp", "lastHeartbeatAt")} for h in resp.json()["items"]]


def _register(backend: TestClient, provider: Actor, host_id: str) -> tuple[str, dict[str, Any]]:
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    return "/v1/hosts/register", register_payload(token)


def _ip(backend: TestClient, provider: Actor, host_id: str) -> tuple[str, dict[str, Any]]:
    return "/v1/hosts/ip", {"kind": "ip", "hostId": host_id, "publicIp": "203.0.113.9"}


def _heartbeat(backend: TestClient, provider: Actor, host_id: str) -> tuple[str, dict[str, Any]]:
    return "/v1/hosts/heartbeat", {"kind": "health", "hostId": host_id, "agentVersion": "0.1.0"}


Request = Callable[[TestClient, Actor, str], tuple[str, dict[str, Any]]]


@pytest.mark.parametrize(
    ("request_for", "domain", "accepted"),
    [
        (_register, Domain.HOST_REGISTRATION, 201),
        (_ip, Domain.HOST_IP, 200),
        (_heartbeat, Domain.HEARTBEAT, 202),
    ],
    ids=["register", "ip", "heartbeat"],
)
def test_only_exact_signatures_of_the_endpoints_kind_are_accepted(
    backend: TestClient,
    provider: Actor,
    wallet: Keypair,
    host_key: Keypair,
    request_for: Request,
    domain: Domain,
    accepted: int,
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    path, payload = request_for(backend, provider, host_id)
    before = _state(backend, provider)
    signers = [(host_key, other) for other in ENVELOPE_DOMAINS - {domain}]
    signers.append((ExtensionSigner(host_key).as_keypair(), domain))
    for signer, signed_as in signers:
        envelope = sign_envelope(signer, payload, domain=signed_as)
        resp = backend.post(path, json=envelope.model_dump())
        assert resp.status_code == 401, (signed_as, resp.text)
        assert "bad signature" in resp.json()["detail"]
    assert _state(backend, provider) == before
    exact = sign_envelope(host_key, payload, domain=domain)
    assert backend.post(path, json=exact.model_dump()).status_code == accepted
    assert _state(backend, provider) != before
