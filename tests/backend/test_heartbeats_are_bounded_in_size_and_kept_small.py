"""A heartbeat's signed payload is at most `heartbeat_max_bytes` (413 beyond, nothing
stored), and what is kept of it for 48 h leaves out the per-VM list (applied to the VMs,
read by nobody later)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from kumulus.backend.models import Heartbeat
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host
from tests.backend.limits_fixtures import client_of, settings_with


def test_an_oversized_heartbeat_is_refused_and_a_normal_one_kept_lean(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, heartbeat_max_bytes=4096)
    wallet = keypair_from_mnemonic(new_mnemonic())
    with client_of(settings) as client:
        provider = Actor(client, "provider")
        link_wallet(client, provider, wallet)
        host_key = keypair_from_mnemonic(new_mnemonic())
        host_id = register_host(client, provider, wallet, host_key)
        vm_stats = [{"vmId": f"{i:016x}", "state": "running"} for i in range(100)]
        big = sign_envelope(
            host_key,
            {"kind": "health", "hostId": host_id, "vmStats": vm_stats},
            domain=Domain.HEARTBEAT,
        )
        refused = client.post("/v1/hosts/heartbeat", json=big.model_dump())
        assert refused.status_code == 413, refused.text
        assert refused.json()["code"] == "too_large" and "4096" in refused.json()["detail"]

        payload = {
            "kind": "health",
            "hostId": host_id,
            "host": {"cpuPercent": 12.5, "memoryPercent": 40.0, "diskPercent": 3.0},
            "vms": {"total": 2, "running": 2, "unhealthy": 0},
            "vmStats": vm_stats[:2],
        }
        ok = sign_envelope(host_key, payload, domain=Domain.HEARTBEAT)
        assert client.post("/v1/hosts/heartbeat", json=ok.model_dump()).status_code == 202
        with client.app.state.db.session() as s:  # type: ignore[attr-defined]
            kept = s.scalars(select(Heartbeat.payload).where(Heartbeat.host_id == host_id)).all()
        assert len(kept) == 1
        assert kept[0]["host"] == payload["host"] and kept[0]["vms"] == payload["vms"]
        assert "vmStats" not in kept[0]
