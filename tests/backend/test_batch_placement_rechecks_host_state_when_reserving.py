"""A batch of placements (backend/batch_placement.py) reads its candidate hosts without
locking them: a host that stops being eligible between that read and the batch's UPDATE
(drained, its key revoked, no longer isolated, gone offline, its price raised over the VM's
limit) must not receive the batch's VMs. place_once checks all of that in the statement
that reserves; the batch's UPDATE must too."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kumulus.backend import scheduler
from kumulus.backend.batch_placement import place_many
from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account, Host
from kumulus.backend.scheduler import Placement, Want

GIB = 1 << 30
TTL = 60.0

# What happens to the best host between the read and the UPDATE (another replica, the
# heartbeat writer, the provider), committed before the UPDATE takes the row.
CHANGES = {
    "drained": "UPDATE hosts SET draining = true WHERE id = :id",
    "revoked": "UPDATE hosts SET host_key_state = 'revoked' WHERE id = :id",
    "not_isolated": "UPDATE hosts SET isolated = false WHERE id = :id",
    "offline": "UPDATE hosts SET last_heartbeat_at = :old WHERE id = :id",
    "price_raised": "UPDATE hosts SET price_cpu_hour = price_cpu_hour * 1000 WHERE id = :id",
}


def _hosts(db: Session, count: int) -> list[str]:
    account = Account(
        email=f"p{secrets.token_hex(4)}@x.io", password_hash="x", role="provider",
        created_at=utcnow(),
    )  # fmt: skip
    db.add(account)
    db.flush()
    ids = []
    for n in range(count):
        host = Host(
            id=f"h{n:03d}{secrets.token_hex(3)}",
            account_id=account.id,
            wallet_address="w",
            api_url="http://127.0.0.1:1",
            public_ip="127.0.0.1",
            region="eu",
            cpu=16.0,
            memory=64 * GIB,
            disk=500 * GIB,
            disk_quota=True,
            isolated=True,
            registered_at=utcnow(),
            last_heartbeat_at=utcnow(),
            rep_tier=5,
        )
        host.set_prices(1000 + n * 10, 300, 1)
        db.add(host)
        ids.append(host.id)
    db.commit()
    return ids


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_host_that_became_ineligible_after_the_read_gets_no_vm(
    backend: TestClient, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    database = backend.app.state.db  # type: ignore[attr-defined]
    with database.session() as db:
        _hosts(db, 4)
    read = scheduler.candidates
    changed: list[str] = []

    def read_then_change(db: Session, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        rows = read(db, *args, **kwargs)  # type: ignore[arg-type]
        best = rows[0][0]  # the id
        # In the batch's own transaction: the UPDATE sees it as it would see a commit made
        # by another transaction in between (on both databases).
        db.execute(
            text(CHANGES[change]), {"id": best, "old": utcnow() - timedelta(seconds=10 * TTL)}
        )
        changed.append(best)
        return rows

    monkeypatch.setattr(scheduler, "candidates", read_then_change)
    cap = 2 * (1000 * 2 + 300 * 2 + 10)  # twice the dearest host's price: the raise passes it
    wants = [
        Want(cpu=2.0, memory=2 * GIB, disk=10 * GIB, region="eu", max_price_hour=cap)
        for _ in range(6)
    ]
    with database.session() as db:
        outcomes = place_many(db, wants, TTL)
        db.commit()
    assert len(changed) == 1
    assert all(isinstance(o, Placement) for o in outcomes), outcomes
    assert changed[0] not in {o.host_id for o in outcomes if isinstance(o, Placement)}
    with database.session() as db:
        host = db.scalar(select(Host).where(Host.id == changed[0]))
        assert host is not None and host.reserved_cpu == 0
