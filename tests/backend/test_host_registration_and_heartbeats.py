"""Hosts register with a one-time provider token, signed by a key of their own which the
linked wallet then delegates, and send heartbeats signed by it; forged, replayed or foreign
traffic is refused."""

import json
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from substrateinterface import Keypair

from kumulus.backend.models import Heartbeat, Host
from kumulus.core.host_tokens import backend_address_in
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import (
    Actor,
    delegate_host,
    link_wallet,
    register_host,
    register_payload,
)


def _heartbeats(backend: TestClient, host_id: str) -> int:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        return int(db.scalar(select(func.count()).where(Heartbeat.host_id == host_id)) or 0)


def test_register_then_heartbeat_brings_host_online(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    backend.put(
        "/v1/provider/profile",
        headers=provider.headers,
        json={"name": "Acme", "country": "DE", "region": "eu"},
    )
    link_wallet(backend, provider, wallet)
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    resp = backend.post(
        "/v1/hosts/register",
        json=sign_envelope(
            host_key, register_payload(token), domain=Domain.HOST_REGISTRATION
        ).model_dump(),
    )
    assert resp.status_code == 201, resp.text
    reg = resp.json()
    assert reg["hostKeyState"] == "pending"
    assert reg["backendAddress"] == backend.get("/healthz").json()["backendAddress"]
    assert backend_address_in(token) == reg["backendAddress"]  # what the agent pins
    host_id = reg["hostId"]
    host = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
    assert host["status"] == "offline" and host["region"] == "eu" and host["cpu"] == 4
    assert delegate_host(backend, wallet, host_id, host_key).status_code == 200

    beat = sign_envelope(
        host_key,
        {"kind": "health", "hostId": host_id, "agentVersion": "0.1.0", "host": {"cpuPercent": 3.5}},
        domain=Domain.HEARTBEAT,
    )
    assert backend.post("/v1/hosts/heartbeat", json=beat.model_dump()).status_code == 202
    host = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
    assert host["status"] == "online" and host["lastHeartbeatAt"]
    assert _heartbeats(backend, host_id) == 1

    # Replayed heartbeat: refused, nothing stored.
    replay = backend.post("/v1/hosts/heartbeat", json=beat.model_dump())
    assert replay.status_code == 401 and "replayed" in replay.json()["detail"]
    # Tampered heartbeat: refused.
    forged = json.loads(
        sign_envelope(
            host_key, {"kind": "health", "hostId": host_id}, domain=Domain.HEARTBEAT
        ).model_dump_json()
    )
    forged["payload"]["host"] = {"cpuPercent": 0}
    assert backend.post("/v1/hosts/heartbeat", json=forged).status_code == 401
    # Unsigned: not an envelope, so nobody is authenticated.
    assert (
        backend.post("/v1/hosts/heartbeat", json={"kind": "health", "hostId": host_id}).status_code
        == 401
    )
    assert _heartbeats(backend, host_id) == 1


def test_host_goes_offline_after_the_ttl(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    beat = sign_envelope(host_key, {"kind": "health", "hostId": host_id}, domain=Domain.HEARTBEAT)
    backend.post("/v1/hosts/heartbeat", json=beat.model_dump())
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host = db.get(Host, host_id)
        assert host is not None and host.last_heartbeat_at is not None
        host.last_heartbeat_at -= timedelta(seconds=31)
        db.commit()
    host_json = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
    assert host_json["status"] == "offline"


def test_registration_needs_a_fresh_token_and_the_key_is_pending(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    first = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    host_key = keypair_from_mnemonic(new_mnemonic())
    pending = backend.post(
        "/v1/hosts/register",
        json=sign_envelope(
            host_key, register_payload(first), domain=Domain.HOST_REGISTRATION
        ).model_dump(),
    )
    # The host's own key: it waits for the wallet's delegation.
    assert pending.status_code == 201 and pending.json()["hostKeyState"] == "pending"
    reused = backend.post(
        "/v1/hosts/register",
        json=sign_envelope(
            host_key, register_payload(first), domain=Domain.HOST_REGISTRATION
        ).model_dump(),
    )
    assert reused.status_code == 401 and "used" in reused.json()["detail"]
    bogus = backend.post(
        "/v1/hosts/register",
        json=sign_envelope(
            host_key, register_payload("kmh_nope"), domain=Domain.HOST_REGISTRATION
        ).model_dump(),
    )
    assert bogus.status_code == 401
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    bad = backend.post(
        "/v1/hosts/register",
        json=sign_envelope(
            host_key,
            register_payload(token, apiUrl="file:///etc/passwd"),
            domain=Domain.HOST_REGISTRATION,
        ).model_dump(),
    )
    assert bad.status_code == 422 and "apiUrl" in bad.json()["detail"]


def test_host_tokens_need_a_linked_wallet(backend: TestClient, provider: Actor) -> None:
    resp = backend.post("/v1/provider/host-tokens", headers=provider.headers)
    assert resp.status_code == 409 and "link a wallet" in resp.json()["detail"]


def test_a_provider_cannot_speak_for_anothers_host(
    backend: TestClient, provider: Actor, other_provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet)  # its key: not the other's wallet
    other_wallet = keypair_from_mnemonic(new_mnemonic())
    link_wallet(backend, other_provider, other_wallet)
    for path, payload in [
        ("/v1/hosts/heartbeat", {"kind": "health", "hostId": host_id}),
        ("/v1/hosts/ip", {"kind": "ip", "hostId": host_id, "publicIp": "6.6.6.6"}),
    ]:
        resp = backend.post(
            path,
            json=sign_envelope(
                other_wallet,
                payload,
                domain=Domain.HEARTBEAT if path.endswith("heartbeat") else Domain.HOST_IP,
            ).model_dump(),
        )
        assert resp.status_code == 404
    assert _heartbeats(backend, host_id) == 0


def test_ip_change_only_when_signed(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    env = sign_envelope(
        host_key, {"kind": "ip", "hostId": host_id, "publicIp": "127.0.0.2"}, domain=Domain.HOST_IP
    )
    assert backend.post("/v1/hosts/ip", json=env.model_dump()).status_code == 200
    host = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
    assert host["publicIp"] == "127.0.0.2"
    forged = json.loads(env.model_dump_json())
    forged["payload"]["publicIp"] = "127.0.0.3"
    assert backend.post("/v1/hosts/ip", json=forged).status_code == 401
