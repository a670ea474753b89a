"""Heartbeats are limited per host (per signer and host id, counted after the signature
is checked, so nobody else can spend a host's budget)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from kumulus.backend.models import Heartbeat
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host
from tests.backend.limits_fixtures import assert_rate_limited, client_of, settings_with


def test_a_host_beating_too_fast_is_refused_and_not_stored(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, heartbeat_rate_per_host="2/minute")
    wallet = keypair_from_mnemonic(new_mnemonic())
    stranger = keypair_from_mnemonic(new_mnemonic())
    with client_of(settings) as client:
        provider = Actor(client, "provider")
        link_wallet(client, provider, wallet)
        host_key = keypair_from_mnemonic(new_mnemonic())
        host_id = register_host(client, provider, wallet, host_key)

        def beat(signer: object) -> object:
            env = sign_envelope(
                signer, {"kind": "health", "hostId": host_id}, domain=Domain.HEARTBEAT
            )
            return client.post("/v1/hosts/heartbeat", json=env.model_dump())

        # A stranger's heartbeats for this host are refused and spend nothing of its budget.
        for _ in range(3):
            assert beat(stranger).status_code in (404, 429)
        assert beat(host_key).status_code == 202
        assert beat(host_key).status_code == 202
        assert_rate_limited(beat(host_key), "heartbeats from this host")
        with client.app.state.db.session() as s:  # type: ignore[attr-defined]
            stored = s.scalar(select(func.count()).where(Heartbeat.host_id == host_id))
        assert stored == 2
