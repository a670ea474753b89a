"""Health stats: collected from the host and VMs, signed with the wallet key, sent (or kept
locally when no backend is configured); the receiver's verify refuses tampering and replays."""

import json
import logging
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kumulus.agent.stats import HEARTBEAT_PATH, StatsCollector
from kumulus.core.signing import (
    Domain,
    NonceCache,
    SignatureError,
    SignedEnvelope,
    keypair_from_mnemonic,
    verify_envelope,
)

PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"


def _service(fake_agent: TestClient):  # type: ignore[no-untyped-def]
    return fake_agent.app.state.service  # type: ignore[attr-defined]


def test_stats_are_signed_sent_and_verifiable(
    fake_agent: TestClient, ssh_keypair: tuple[Path, str]
) -> None:
    fake_agent.post(
        "/v1/vms",
        json={
            "username": "dev",
            "sshKey": ssh_keypair[1],
            "cpu": 1,
            "memory": "512m",
            "disk": "2g",
        },
    )
    received: list[bytes] = []

    def backend(request: httpx.Request) -> httpx.Response:
        assert request.url.path == HEARTBEAT_PATH
        received.append(request.content)
        return httpx.Response(202)

    kp = keypair_from_mnemonic(PHRASE)
    collector = StatsCollector(
        _service(fake_agent),
        kp,
        backend_url="http://backend.test",
        interval=10,
        http=httpx.Client(transport=httpx.MockTransport(backend)),
    )
    collector.send_once()
    collector.send_once()  # second round has per-VM CPU %
    assert len(received) == 2
    nonces = NonceCache()
    env = SignedEnvelope.model_validate_json(received[1])
    payload = verify_envelope(
        env, nonces, expected_address=kp.ss58_address, domain=Domain.HEARTBEAT
    )
    assert env.address == "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"
    assert payload["vms"] == {"total": 1, "running": 1, "unhealthy": 0}
    assert payload["docker"]["up"] is True
    assert payload["host"]["memoryTotal"] > 0 and 0 <= payload["host"]["diskPercent"] <= 100
    assert payload["vmStats"][0]["memoryBytes"] == 10 << 20
    assert payload["vmStats"][0]["cpuPercent"] is not None

    with pytest.raises(SignatureError, match="replayed"):
        verify_envelope(env, nonces, domain=Domain.HEARTBEAT)
    tampered = json.loads(received[0])
    tampered["payload"]["vms"]["running"] = 0
    with pytest.raises(SignatureError, match="bad signature"):
        verify_envelope(SignedEnvelope(**tampered), NonceCache(), domain=Domain.HEARTBEAT)


def test_without_backend_stats_are_logged_locally_without_secrets(
    fake_agent: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    kp = keypair_from_mnemonic(PHRASE)
    collector = StatsCollector(_service(fake_agent), kp, backend_url=None, interval=10)
    with caplog.at_level(logging.INFO):
        env = collector.send_once()
    assert "no backend configured" in caplog.text
    assert env.address in caplog.text
    for word in PHRASE.split()[:3]:
        assert word not in caplog.text
    assert verify_envelope(env, NonceCache(), domain=Domain.HEARTBEAT) == env.payload


def test_backend_refusal_is_logged_not_raised(
    fake_agent: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    kp = keypair_from_mnemonic(PHRASE)
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(401, text="no")))
    collector = StatsCollector(
        _service(fake_agent), kp, backend_url="http://b", interval=1, http=http
    )
    collector.send_once()
    assert "HTTP 401" in caplog.text
