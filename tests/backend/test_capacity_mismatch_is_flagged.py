"""A host whose heartbeats report a machine smaller than its declared capacity is flagged
(the reason in its API view), drops to reputation tier 0 at once and stays there through
the reputation job, so placement prefers honest hosts; a report that agrees clears it."""

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from substrateinterface import Keypair

from kumulus.backend.models import Host
from kumulus.backend.reputation import recompute
from kumulus.backend.scheduler import Want, place
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import FULL_ISOLATION, Actor, link_wallet, register_host

GIB = 1 << 30
# register_payload declares 4 vCPU, 8 GiB memory, 100 GiB disk.
SMALLER = {"cpuCount": 2, "memoryTotal": 4 * GIB, "diskTotal": 200 * GIB, "cpuPercent": 1.0}
HONEST = {"cpuCount": 4, "memoryTotal": 9 * GIB, "diskTotal": 120 * GIB}


def _beat(
    backend: TestClient, host_key: Keypair, host_id: str, machine: Any, status: int = 202
) -> None:
    payload = {
        "kind": "health",
        "hostId": host_id,
        "agentVersion": "0.1.0",
        "host": machine,
        "isolation": FULL_ISOLATION,
    }
    resp = backend.post(
        "/v1/hosts/heartbeat",
        json=sign_envelope(host_key, payload, domain=Domain.HEARTBEAT).model_dump(),
    )
    assert resp.status_code == status, resp.text


def _view(backend: TestClient, provider: Actor, host_id: str) -> dict[str, Any]:
    resp = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers)
    return dict(resp.json())


def test_a_host_declaring_more_than_its_machine_is_flagged_and_ranked_down(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    liar_key, honest_key = (keypair_from_mnemonic(new_mnemonic()) for _ in range(2))
    liar, honest = (
        register_host(backend, provider, wallet, liar_key),
        register_host(backend, provider, wallet, honest_key),
    )
    _beat(backend, liar_key, liar, SMALLER)
    _beat(backend, honest_key, honest, HONEST)
    view = _view(backend, provider, liar)
    assert view["capacityProblem"] == (
        "declares 4 vCPU, the machine reports 2 vCPU; "
        "declares 8g memory, the machine reports 4g memory"
    )
    assert _view(backend, provider, honest)["capacityProblem"] is None
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        assert db.get(Host, liar).rep_tier == 0  # at once, not at the next reputation pass
        # The honest host is the busier one: only the flag can send VMs away from the liar.
        db.execute(update(Host).where(Host.id == honest).values(load=0.9))
        db.commit()
        recompute(db)
        liar_row, honest_row = db.get(Host, liar), db.get(Host, honest)
        assert liar_row is not None and honest_row is not None
        db.refresh(liar_row)
        db.refresh(honest_row)
        assert liar_row.rep_tier == 0 < honest_row.rep_tier
        assert liar_row.reputation < honest_row.reputation
        assert place(db, Want(1, GIB, GIB), 30).host_id == honest
    assert (
        _view(backend, provider, liar)["reputation"]
        < _view(backend, provider, honest)["reputation"]
    )

    # The provider fixes the agent's declaration... here: the machine reports enough.
    _beat(backend, liar_key, liar, HONEST)
    assert _view(backend, provider, liar)["capacityProblem"] is None
    with db_.session() as db:
        recompute(db)
        row = db.get(Host, liar)
        assert row is not None and row.rep_tier > 0


def test_heartbeats_without_a_machine_report_are_flagged(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    """Leaving the report out is no way around the check: a host whose heartbeats say
    nothing usable about its machine is flagged (tier 0) until one shows it holds."""
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    _beat(backend, host_key, host_id, HONEST)
    assert _view(backend, provider, host_id)["capacityProblem"] is None
    _beat(backend, host_key, host_id, {"cpuPercent": 3})  # nothing usable about the machine
    assert "do not report the machine" in _view(backend, provider, host_id)["capacityProblem"]
    _beat(backend, host_key, host_id, HONEST)
    assert _view(backend, provider, host_id)["capacityProblem"] is None
    for nonsense in ({"cpuCount": "lots", "memoryTotal": -1}, "big"):  # refused outright
        _beat(backend, host_key, host_id, nonsense, status=422)
        assert _view(backend, provider, host_id)["capacityProblem"] is None
    payload = {"kind": "health", "hostId": host_id, "agentVersion": "0.1.0"}
    resp = backend.post(
        "/v1/hosts/heartbeat",
        json=sign_envelope(host_key, payload, domain=Domain.HEARTBEAT).model_dump(),
    )
    assert resp.status_code == 202
    assert "do not report the machine" in _view(backend, provider, host_id)["capacityProblem"]
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(Host, host_id)
        assert row is not None and row.rep_tier == 0
