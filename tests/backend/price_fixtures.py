"""Online hosts at chosen unit prices, reputation tiers and loads, written directly."""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Host
from tests.backend.billing_fixtures import account

GIB = 1 << 30
UNIT = 10**12


def priced_host(
    db: Session,
    prices: tuple[int, int, int],
    tier: int = 5,
    load: float = 0.0,
    region: str = "",
) -> str:
    """An online 8 vCPU / 32 GiB / 500 GiB host of a new provider, committed."""
    row = Host(
        id=secrets.token_hex(8),
        account_id=account(db, "provider").id,
        wallet_address="w",
        api_url="http://127.0.0.1:1",
        public_ip="127.0.0.1",
        region=region,
        cpu=8,
        memory=32 * GIB,
        disk=500 * GIB,
        disk_quota=True,
        isolated=True,
        registered_at=utcnow(),
        last_heartbeat_at=utcnow(),
        rep_tier=tier,
        load=load,
    )
    row.set_prices(*prices)
    db.add(row)
    db.commit()
    return row.id
