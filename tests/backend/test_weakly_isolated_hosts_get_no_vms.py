"""A host's isolation comes from its signed heartbeats and is stored on it; the scheduler
places only on fully isolated hosts (a cheaper weak host loses the VM), explains why nothing
fits, and uses a weak host only for a developer who set allowWeakIsolation."""

from typing import Any

from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.backend.models import Host
from kumulus.backend.scheduler import NoHostFitsError, Want, place
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import FULL_ISOLATION, Actor, link_wallet, register_host

GIB = 1 << 30
WEAK = {
    **FULL_ISOLATION,
    "level": "weak",
    "missing": ["userns-remap"],
    "usernsRemap": False,
    "detail": "root in VMs is HOST ROOT",
}
SHAPE = {"cpu": 1, "memory": "1g", "disk": "10g"}


def _beat(backend: TestClient, host_key: Keypair, host_id: str, isolation: Any) -> int:
    payload: dict[str, Any] = {"kind": "health", "hostId": host_id, "agentVersion": "0.1.0"}
    if isolation is not None:
        payload["isolation"] = isolation
    env = sign_envelope(host_key, payload, domain=Domain.HEARTBEAT)
    return backend.post("/v1/hosts/heartbeat", json=env.model_dump()).status_code


def _view(backend: TestClient, provider: Actor, host_id: str) -> dict[str, Any]:
    return dict(backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json())


def test_heartbeats_set_the_isolation_and_placement_follows(
    backend: TestClient, provider: Actor, developer: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    weak_key, strong_key = (keypair_from_mnemonic(new_mnemonic()) for _ in range(2))
    weak, strong = (
        register_host(backend, provider, wallet, weak_key),
        register_host(backend, provider, wallet, strong_key),
    )
    assert _beat(backend, weak_key, weak, WEAK) == 202
    assert _beat(backend, strong_key, strong, FULL_ISOLATION) == 202
    view = _view(backend, provider, weak)
    assert view["isolated"] is False and view["isolationProblem"] == "missing: userns-remap"
    assert _view(backend, provider, strong)["isolated"] is True

    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        # The weak host is the cheaper and emptier one: only isolation sends VMs away.
        row = db.get(Host, strong)
        row.set_prices(row.price_cpu_hour * 2, row.price_memory_gib_hour, row.price_disk_gib_hour)
        row.load = 0.9
        db.commit()
        assert place(db, Want(1, GIB, 10 * GIB), 30).host_id == strong
        assert place(db, Want(1, GIB, 10 * GIB, allow_weak=True), 30).host_id == weak

    # The strong host stops reporting isolation (an old agent): it is weak too now.
    assert _beat(backend, strong_key, strong, None) == 202
    assert _view(backend, provider, strong)["isolationProblem"] == (
        "not reported by the agent (upgrade it)"
    )
    refused = backend.post("/v1/vms/quote", headers=developer.headers, json=SHAPE)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "no_host_fits"
    assert "none fully isolates" in refused.json()["detail"]
    assert "allowWeakIsolation" in refused.json()["detail"]
    created = backend.post(
        "/v1/vms", headers=developer.headers, json={**SHAPE, "username": "dev", "sshKey": KEY}
    )
    assert created.status_code == 409 and "none fully isolates" in created.json()["detail"]
    allowed = backend.post(
        "/v1/vms/quote", headers=developer.headers, json={**SHAPE, "allowWeakIsolation": True}
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["hostId"] in (weak, strong)
    with db_.session() as db:
        try:
            place(db, Want(1, GIB, 10 * GIB), 30)
            raise AssertionError("placed on a weak host")
        except NoHostFitsError as exc:
            assert "2 host(s) online, none fully isolates" in str(exc)


def test_a_forged_or_malformed_report_is_not_full_isolation(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host = register_host(backend, provider, wallet, host_key)
    assert _view(backend, provider, host)["isolated"] is True  # registered fully isolated
    # "full" while a required part says no: not believed.
    assert _beat(backend, host_key, host, {**FULL_ISOLATION, "firewall": False}) == 202
    assert _view(backend, provider, host)["isolationProblem"] == "missing: firewall"
    for bad in ({"level": "total"}, {**FULL_ISOLATION, "missing": ["x"]}, "full"):
        assert _beat(backend, host_key, host, bad) == 422
    assert _view(backend, provider, host)["isolated"] is False


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJwN0C2iBicuYsVM04jpquCDPlcprocMol0tOUXXNDtG dev"
