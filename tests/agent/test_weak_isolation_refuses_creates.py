"""Isolation is required, not reported: without userns-remap, the firewall or the disk quota
the agent creates no VM (503 `weak_isolation`, naming what is missing), unless the provider
opted out; either way `/v1/host` and the signed health stats carry the isolation level."""

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.agent.app import create_app
from kumulus.agent.stats import StatsCollector
from kumulus.config import AgentSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.fakes import FakeRuntime


def _client(settings: AgentSettings, runtime: FakeRuntime) -> TestClient:
    client = TestClient(create_app(settings, runtime, collect_stats=False))
    client.headers["Authorization"] = f"Bearer {settings.token_path.read_text().strip()}"
    return client


def _body(key: str) -> dict[str, Any]:
    return {"username": "devtest", "sshKey": key, "cpu": 1, "memory": "1g"}


@pytest.mark.parametrize(
    ("runtime", "missing", "fix"),
    [
        (FakeRuntime(userns_remap=False), ["userns-remap"], '"userns-remap": "default"'),
        (FakeRuntime(firewall=False), ["firewall"], "iptables is not installed"),
        (FakeRuntime(disk_quota=False), ["disk-quota"], "cannot limit a container's disk"),
    ],
)
def test_create_is_refused_naming_what_is_missing(
    agent_settings: AgentSettings,
    ssh_keypair: tuple[Path, str],
    runtime: FakeRuntime,
    missing: list[str],
    fix: str,
) -> None:
    with _client(agent_settings, runtime) as client:
        resp = client.post("/v1/vms", json=_body(ssh_keypair[1]))
        assert resp.status_code == 503, resp.text
        body = resp.json()
        assert body["code"] == "weak_isolation" and body["retry"] is False
        assert fix in body["detail"] and "KUMULUS_AGENT_ALLOW_WEAK_ISOLATION=1" in body["detail"]
        assert runtime.create_calls == 0 and runtime.vms == {}
        report = client.get("/v1/host").json()["isolation"]
        assert report["level"] == "weak" and report["missing"] == missing


def test_firewall_switched_off_is_missing_too(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    runtime = FakeRuntime()
    settings = agent_settings.model_copy(update={"firewall": False})
    with _client(settings, runtime) as client:
        resp = client.post("/v1/vms", json=_body(ssh_keypair[1]))
        assert resp.status_code == 503 and "KUMULUS_AGENT_FIREWALL=false" in resp.json()["detail"]
        assert runtime.create_calls == 0


def test_a_provider_who_opts_out_gets_vms_and_reports_weak(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    runtime = FakeRuntime(userns_remap=False)
    settings = agent_settings.model_copy(update={"allow_weak_isolation": True})
    with _client(settings, runtime) as client:
        resp = client.post("/v1/vms", json=_body(ssh_keypair[1]))
        assert resp.status_code == 201, resp.text
        assert len(runtime.vms) == 1
        report = client.get("/v1/host").json()["isolation"]
        assert report["level"] == "weak" and report["missing"] == ["userns-remap"]
        assert "HOST ROOT" in report["detail"] and "accepts VMs without" in report["detail"]


def test_full_isolation_creates_and_is_in_the_signed_stats(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    runtime = FakeRuntime()
    with _client(agent_settings, runtime) as client:
        assert client.post("/v1/vms", json=_body(ssh_keypair[1])).status_code == 201
        assert runtime.smtp_allowed is False  # SMTP blocked unless the provider allows it
        report = client.get("/v1/host").json()["isolation"]
        assert report["level"] == "full" and report["missing"] == []
        assert report["smtpBlocked"] is True
        wallet: Keypair = keypair_from_mnemonic(new_mnemonic())
        collector = StatsCollector(
            client.app.state.service,  # type: ignore[attr-defined]
            wallet,
            backend_url=None,
            interval=60,
        )
        envelope = collector.send_once()
        assert envelope.payload["isolation"]["level"] == "full"
