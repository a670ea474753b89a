"""When a host's address changes (signed by its provider), its VMs' ssh lines follow."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.models import VM, Account, Host
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.billing_fixtures import vm
from tests.backend.conftest import Actor, link_wallet, register_host


def test_new_address_reaches_the_vms_of_that_host_only(
    backend: TestClient, provider: Actor, developer: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    moving = register_host(backend, provider, wallet, host_key)
    staying = register_host(backend, provider, wallet, keypair_from_mnemonic(new_mnemonic()))
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        dev = db.get(Account, developer.id)
        assert dev is not None
        ids = []
        for host_id in (moving, staying):
            on = db.get(Host, host_id)
            assert on is not None
            row = vm(db, dev, on, utcnow() - timedelta(minutes=1))
            row.ssh_host, row.ssh_port = "127.0.0.1", 2201
            ids.append(row.id)
        db.execute(update(Host).values(last_heartbeat_at=utcnow()))
        db.commit()
    env = sign_envelope(
        host_key,
        {"kind": "ip", "hostId": moving, "publicIp": "198.51.100.9"},
        domain=Domain.HOST_IP,
    )
    assert backend.post("/v1/hosts/ip", json=env.model_dump()).status_code == 200
    moved = backend.get(f"/v1/vms/{ids[0]}", headers=developer.headers).json()
    assert moved["sshHost"] == "198.51.100.9"
    assert moved["sshCommand"] == "ssh -p 2201 alice@198.51.100.9"
    with db_.session() as db:
        kept = db.get(VM, ids[1])
        assert kept is not None and kept.ssh_host == "127.0.0.1"
