"""The backend's event counters move with what really happened: each VM placed counts in
kumulus_placements_total, each create refused for want of a host in
kumulus_placement_refusals_total{reason="no_host_fits"}, each heartbeat stored or refused in
kumulus_heartbeats_total by outcome and reason (the refusal's code), a body too large to
be read at all included."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from kumulus.backend import vms
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.away_agent import AwayAgent
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor, link_wallet, register_host
from tests.backend.limits_fixtures import client_of, settings_with


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", AwayAgent)
    AwayAgent.reset()


def _counters(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text  # from loopback: no token needed
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(("kumulus_placement", "kumulus_heartbeats"))
        and sample.name.endswith("_total")
    }


def test_placements_and_refusals_are_counted(
    tmp_path: Path, database_url: str, ssh_keypair: tuple[Path, str]
) -> None:
    with client_of(settings_with(tmp_path, database_url), ip="127.0.0.1") as client:
        with client.app.state.db.session() as db:  # type: ignore[attr-defined]
            host(db, account(db, "provider"))  # 8 vCPU
            db.commit()
        dev = Actor(client, "developer")
        body = {"username": "bob", "sshKey": ssh_keypair[1], "cpu": 3, "memory": "1g"}
        made = [client.post("/v1/vms", headers=dev.headers, json=body) for _ in range(3)]
        assert [r.status_code for r in made] == [201, 201, 409], [r.text for r in made]
        assert made[2].json()["code"] == "no_host_fits"
        counted = _counters(client)
    assert counted[("kumulus_placements_total", ())] == 2
    assert counted[("kumulus_placement_refusals_total", (("reason", "no_host_fits"),))] == 1


def test_heartbeats_are_counted_by_outcome_and_reason(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, heartbeat_max_bytes=4096)
    wallet = keypair_from_mnemonic(new_mnemonic())
    with client_of(settings, ip="127.0.0.1") as client:
        provider = Actor(client, "provider")
        link_wallet(client, provider, wallet)
        host_key = keypair_from_mnemonic(new_mnemonic())
        host_id = register_host(client, provider, wallet, host_key)
        for _ in range(2):
            ok = sign_envelope(
                host_key, {"kind": "health", "hostId": host_id}, domain=Domain.HEARTBEAT
            )
            assert client.post("/v1/hosts/heartbeat", json=ok.model_dump()).status_code == 202
        stranger = keypair_from_mnemonic(new_mnemonic())  # not the host's key
        forged = sign_envelope(
            stranger, {"kind": "health", "hostId": host_id}, domain=Domain.HEARTBEAT
        )
        refused = client.post("/v1/hosts/heartbeat", json=forged.model_dump())
        assert 400 <= refused.status_code < 500 and refused.status_code != 413, refused.text
        big = sign_envelope(
            host_key,
            {"kind": "health", "hostId": host_id, "vmStats": [{"vmId": "x" * 16}] * 200},
            domain=Domain.HEARTBEAT,
        )
        assert client.post("/v1/hosts/heartbeat", json=big.model_dump()).status_code == 413
        # Larger still: refused from its Content-Length, before the route reads anything.
        huge = client.post(
            "/v1/hosts/heartbeat", content=b"{" + b" " * 1_000_000 + b"}",
            headers={"content-type": "application/json"},
        )  # fmt: skip
        assert huge.status_code == 413
        counted = _counters(client)
    accepted = ("kumulus_heartbeats_total", (("outcome", "accepted"), ("reason", "")))
    assert counted[accepted] == 2
    reasons = {
        dict(labels)["reason"]: value
        for (name, labels), value in counted.items()
        if name == "kumulus_heartbeats_total" and dict(labels)["outcome"] == "refused"
    }
    assert reasons == {refused.json()["code"]: 1, "too_large": 2}
