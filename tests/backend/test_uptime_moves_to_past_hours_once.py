"""A host's uptime for the current hour lives on its host row (the heartbeat's host update
credits it); the first heartbeat of a later hour moves that hour to host_uptime, once.
Reputation counts the host row's hour and the past hours, each once (SQLite and
PostgreSQL)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from substrateinterface import Keypair

from kumulus.backend.api.routes.agents import prepare_heartbeat
from kumulus.backend.clock import travel, utcnow
from kumulus.backend.heartbeats import HeartbeatWriter, Outcome, hour_of
from kumulus.backend.models import Host, HostUptime
from kumulus.backend.reputation import WINDOWS, recompute, score, uptime_by_hour
from kumulus.core.signing import Domain, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host


def _beat(app: Any, key: Keypair, host_id: str, at: float, heard_ago: float) -> None:
    """A heartbeat signed at `at`, the host's previous one `heard_ago` seconds back."""
    with app.state.db.session() as s:
        s.execute(
            update(Host)
            .where(Host.id == host_id)
            .values(last_heartbeat_at=utcnow() - timedelta(seconds=heard_ago))
        )
        s.commit()
    writer: HeartbeatWriter = app.state.heartbeats
    envelope = sign_envelope(
        key, {"kind": "health", "hostId": host_id, "agentVersion": "9"},
        domain=Domain.HEARTBEAT, now=at,
    )  # fmt: skip
    beat = prepare_heartbeat(envelope, app.state.settings)
    assert writer.submit(beat).result(timeout=20) is Outcome.ACCEPTED


def _past_hours(app: Any, host_id: str) -> dict[int, float]:
    with app.state.db.session() as s:
        rows = s.execute(
            select(HostUptime.hour, HostUptime.up_seconds).where(HostUptime.host_id == host_id)
        )
        return {hour: seconds for hour, seconds in rows}


def test_an_hour_moves_to_host_uptime_at_the_next_hour_once(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    app: Any = backend.app
    assert app.state.settings.heartbeat_ttl >= 25
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    base = round(time.time(), 3)
    hour = hour_of(utcnow())

    _beat(app, host_key, host_id, base, heard_ago=20)
    _beat(app, host_key, host_id, base + 0.001, heard_ago=3)
    assert _past_hours(app, host_id) == {}  # the current hour stays on the host row
    with app.state.db.session() as s:
        on_row = s.execute(
            select(Host.uptime_hour, Host.uptime_seconds).where(Host.id == host_id)
        ).one()
    assert on_row.uptime_hour == hour
    assert 23 <= on_row.uptime_seconds < 26

    with travel(timedelta(hours=1)):
        _beat(app, host_key, host_id, base + 0.002, heard_ago=10)
        _beat(app, host_key, host_id, base + 0.003, heard_ago=5)
        past = _past_hours(app, host_id)
        assert list(past) == [hour]  # moved once, not again by the hour's second heartbeat
        assert past[hour] == pytest.approx(on_row.uptime_seconds)
        with app.state.db.session() as s:
            hours = uptime_by_hour(s, host_id)
        assert set(hours) == {hour, hour + 1}
        assert 15 <= hours[hour + 1] < 18


def test_reputation_counts_the_host_rows_hour_and_past_hours_once(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    app: Any = backend.app
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    now = utcnow()
    with app.state.db.session() as s:
        s.execute(
            update(Host)
            .where(Host.id == host_id)
            .values(
                registered_at=now - timedelta(days=3),
                uptime_hour=hour_of(now),
                uptime_seconds=900.0,
            )
        )
        s.add(HostUptime(host_id=host_id, hour=hour_of(now) - 30, up_seconds=3600.0))  # 24h-7d
        s.add(HostUptime(host_id=host_id, hour=hour_of(now) - 2, up_seconds=3000.0))
        s.commit()
        registered_at: datetime = s.scalar(select(Host.registered_at).where(Host.id == host_id))
        recompute(s, now)
        got = s.execute(select(Host.uptime_24h, Host.uptime_7d).where(Host.id == host_id)).one()
    expected = score(
        {"24h": 3900.0, "7d": 7500.0, "30d": 7500.0}, registered_at, now, 0, 0, 0,
        capacity_flagged=False,
    )  # fmt: skip
    assert set(WINDOWS) == {"24h", "7d", "30d"}
    assert got.uptime_24h == pytest.approx(expected.uptime_24h)
    assert got.uptime_7d == pytest.approx(expected.uptime_7d)
