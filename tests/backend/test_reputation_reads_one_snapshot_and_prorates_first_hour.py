"""Reputation's uptime windows count the hour they start in only for the part inside the
window, and recompute reads past hours and the host row's current hour in one statement
(one snapshot: a heartbeat moving an hour between two reads could drop or double it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, update
from substrateinterface import Keypair

from kumulus.backend import reputation
from kumulus.backend.heartbeats import hour_of
from kumulus.backend.models import Host, HostUptime
from tests.backend.conftest import Actor, link_wallet, register_host


def _now() -> datetime:
    """59 minutes into an hour: a 24 h window starts one minute before an hour ends."""
    hour = hour_of(datetime.now(UTC)) - 1
    return datetime.fromtimestamp(hour * 3600 + 59 * 60, UTC)


def test_the_first_hour_of_a_window_counts_only_inside_it(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    early, late = (register_host(backend, provider, wallet) for _ in range(2))
    now = _now()
    first = hour_of(now - reputation.WINDOWS["24h"])
    db_: Any = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        db.execute(
            update(Host)
            .where(Host.id.in_([early, late]))
            .values(registered_at=now - timedelta(days=30))
        )
        # `early` was up for the whole hour the window starts in: 59 of its minutes are
        # before the window. `late` was up for the whole next hour, all inside.
        db.add(HostUptime(host_id=early, hour=first, up_seconds=3600.0))
        db.add(HostUptime(host_id=late, hour=first + 1, up_seconds=3600.0))
        db.commit()
        reputation.recompute(db, now)
        a, b = db.get(Host, early), db.get(Host, late)
        assert a is not None and b is not None
        observed = reputation.WINDOWS["24h"].total_seconds()
        assert a.uptime_24h == pytest.approx(reputation.uptime(60.0, observed))
        assert b.uptime_24h == pytest.approx(reputation.uptime(3600.0, observed))
        # The 7-day window holds both hours whole.
        assert a.uptime_7d == pytest.approx(b.uptime_7d)


def test_a_stale_host_rows_hour_is_prorated_too(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host = register_host(backend, provider, wallet)
    now = _now()
    first = hour_of(now - reputation.WINDOWS["24h"])
    db_: Any = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        # Last heard from a day ago: its hour is still on its row, not in host_uptime.
        db.execute(
            update(Host)
            .where(Host.id == host)
            .values(
                registered_at=now - timedelta(days=30), uptime_hour=first, uptime_seconds=3600.0
            )
        )
        db.commit()
        reputation.recompute(db, now)
        row = db.get(Host, host)
        assert row is not None
        assert row.uptime_24h == pytest.approx(reputation.uptime(60.0, 86400.0))
        assert row.uptime_7d == pytest.approx(reputation.uptime(3600.0, 7 * 86400.0))


def test_recompute_reads_uptime_in_one_statement(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    register_host(backend, provider, wallet)
    db_: Any = backend.app.state.db  # type: ignore[attr-defined]
    reads: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            reads.append(statement)

    with db_.session() as db:
        engine = db.get_bind()
        event.listen(engine, "before_cursor_execute", seen)
        try:
            assert reputation.recompute(db) >= 1
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    assert len(reads) == 1, reads
    assert "host_uptime" in reads[0] and "uptime_seconds" in reads[0]
