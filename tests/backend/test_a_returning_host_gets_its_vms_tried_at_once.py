"""A host heard from again after a silence longer than the heartbeat TTL (a reboot, an
outage) gets its VMs' pending intents tried at the jobs' next run: the backoff they built
up while it was away (up to 10 minutes) no longer keeps them waiting. A host that was never
away, and an intent its converge worker holds, are left as they were."""

from __future__ import annotations

import secrets
from datetime import timedelta

from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.backend.api.routes.agents import accept_heartbeat
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import VM, Host
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host

GIB = 1 << 30


def _vm(host_id: str, account_id: int, attempts: int, after: timedelta) -> VM:
    now = utcnow()
    return VM(
        id=secrets.token_hex(8), account_id=account_id, name="vm", username="dev",
        ssh_key="ssh-ed25519 AAAA", cpu=1.0, memory=GIB, disk=GIB, region="eu",
        intended_state="running", actual_state="pending", reserved=True, host_id=host_id,
        created_at=now, updated_at=now, converge_attempts=attempts, converge_after=now + after,
    )  # fmt: skip


def test_backoff_ends_when_the_host_comes_back(
    backend: TestClient, provider: Actor, developer: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    keys = [keypair_from_mnemonic(new_mnemonic()) for _ in range(2)]
    away, present = (register_host(backend, provider, wallet, key) for key in keys)
    app = backend.app
    settings = app.state.settings  # type: ignore[attr-defined]
    with app.state.db.session() as db:  # type: ignore[attr-defined]
        gone = utcnow() - timedelta(seconds=settings.heartbeat_ttl * 10)
        db.get(Host, away).last_heartbeat_at = gone
        db.get(Host, present).last_heartbeat_at = utcnow()
        backed_off = _vm(away, developer.id, attempts=6, after=timedelta(minutes=8))
        claimed = _vm(away, developer.id, attempts=0, after=timedelta(seconds=25))
        elsewhere = _vm(present, developer.id, attempts=6, after=timedelta(minutes=8))
        db.add_all([backed_off, claimed, elsewhere])
        db.commit()
        ids = backed_off.id, claimed.id, elsewhere.id

    for key, host_id in zip(keys, (away, present), strict=True):
        envelope = sign_envelope(
            key, {"kind": "health", "hostId": host_id, "agentVersion": "9"},
            domain=Domain.HEARTBEAT,
        )  # fmt: skip
        accept_heartbeat(envelope, app.state.heartbeats, settings)  # type: ignore[attr-defined]

    now = utcnow()
    with app.state.db.session() as db:  # type: ignore[attr-defined]
        backed_off, claimed, elsewhere = (db.get(VM, vm_id) for vm_id in ids)
        assert backed_off is not None and claimed is not None and elsewhere is not None
        assert backed_off.converge_attempts == 0
        assert aware(backed_off.converge_after) <= now  # due at the next run
        assert claimed.converge_attempts == 0  # its worker's still
        assert aware(claimed.converge_after) > now + timedelta(seconds=10)
        assert elsewhere.converge_attempts == 6  # that host was never away
        assert aware(elsewhere.converge_after) > now + timedelta(minutes=7)
