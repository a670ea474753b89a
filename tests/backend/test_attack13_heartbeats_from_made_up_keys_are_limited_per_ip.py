"""The per-host heartbeat limit is keyed by the signer and the host id, both the sender's
choice: anyone can make a key, sign heartbeats for host ids nobody registered, and send
them without end (each one a signature check and a database lookup on the threads real
hosts' heartbeats need). Heartbeats are therefore also limited per client IP, before the
signature is checked."""

from __future__ import annotations

import secrets
from pathlib import Path

from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.limits_fixtures import assert_rate_limited, client_of, settings_with


def test_made_up_heartbeats_from_one_address_run_into_a_limit(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path, heartbeat_rate_per_host="2/minute", heartbeat_rate_per_ip="5/minute"
    )
    key = keypair_from_mnemonic(new_mnemonic())
    with client_of(settings) as client:

        def made_up() -> object:
            host_id = secrets.token_hex(8)  # a fresh (signer, host) budget each time
            env = sign_envelope(key, {"kind": "health", "hostId": host_id}, domain=Domain.HEARTBEAT)
            return client.post("/v1/hosts/heartbeat", json=env.model_dump())

        for _ in range(5):
            assert made_up().status_code == 404  # type: ignore[attr-defined]
        assert_rate_limited(made_up(), "heartbeats from your address")
        # Nor does garbage get through once the address is over its limit.
        garbage = client.post("/v1/hosts/heartbeat", content=b"{}")
        assert_rate_limited(garbage, "heartbeats from your address")
