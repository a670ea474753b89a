"""Reputation from heartbeat uptime and lease outcomes."""

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from substrateinterface import Keypair

from kumulus.backend import reputation
from kumulus.backend.clock import utcnow
from kumulus.backend.heartbeats import hour_of
from kumulus.backend.models import Host, HostUptime
from tests.backend.conftest import Actor, link_wallet, register_host


def test_score_rewards_uptime_and_completed_leases() -> None:
    now = utcnow()
    week_ago = now - timedelta(days=7)
    always = reputation.score({"24h": 86400, "7d": 7 * 86400}, week_ago, now, 50, 0)
    flaky = reputation.score({"24h": 43200, "7d": 3 * 86400}, week_ago, now, 5, 5)
    newcomer = reputation.score({}, now - timedelta(seconds=30), now, 0, 0)
    assert always.tier >= 9 and always.uptime_7d > 0.99
    assert flaky.tier <= 5 and 0.4 < flaky.uptime_7d < 0.45
    assert 0.4 < newcomer.reputation < 0.6  # neither trusted nor punished yet
    assert always.reputation > newcomer.reputation > flaky.reputation
    drifting = reputation.score({"24h": 86400, "7d": 7 * 86400}, week_ago, now, 50, 0, drift=3)
    assert abs(drifting.reputation - (always.reputation - 0.15)) < 1e-9
    assert drifting.tier < always.tier


def test_recompute_reads_uptime_buckets(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    steady, dropped = (register_host(backend, provider, wallet) for _ in range(2))
    now = utcnow()
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        db.execute(
            update(Host)
            .where(Host.id.in_([steady, dropped]))
            .values(registered_at=now - timedelta(hours=24))
        )
        for h in range(24):
            hour = hour_of(now - timedelta(hours=h))
            db.add(HostUptime(host_id=steady, hour=hour, up_seconds=3600.0))
            if h < 6:  # only heard from for the last 6 hours
                db.add(HostUptime(host_id=dropped, hour=hour, up_seconds=3600.0))
        db.commit()
        assert reputation.recompute(db, now) >= 2
        a, b = db.get(Host, steady), db.get(Host, dropped)
        assert a is not None and b is not None
        assert a.uptime_24h is not None and a.uptime_24h > 0.97
        assert b.uptime_24h is not None and 0.25 < b.uptime_24h < 0.35
        assert a.rep_tier > b.rep_tier
    host = backend.get(f"/v1/provider/hosts/{steady}", headers=provider.headers).json()
    assert host["uptime24h"] > 0.97 and host["reputation"] > 0.8
