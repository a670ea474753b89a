"""Two backend replicas storing heartbeats of one host at the same time both credit it
the whole gap since its previous heartbeat: a provider earns up to twice (N replicas: N
times) the uptime its host had.

(Attacker review attack19; fixed otherwise than suggested, keeping the writer's lock
order (VM rows, then hosts): the host update's locking read returns each host's previous
heartbeat time as read under its lock, and the uptime is credited from that, after the
update.) `HeartbeatWriter._write_in` (backend/heartbeats.py) reads
`hosts.last_heartbeat_at` with a plain SELECT; `_add_uptime` then adds
`min(now - last_heartbeat_at, ttl)` to `host_uptime`. The new re-check under the host's
row lock (`_UPDATE_HOSTS_PG`: `heartbeat_signed_at < v.first`) only asks whether the
other process stored a heartbeat *signed later*: two different heartbeats of the host,
signed a millisecond apart and sent to two replicas at once (the agent's key holder can
always do that), both pass it, and both batches credit the same gap, read before either
committed. A host that heartbeats every 30 s to two replicas at once is credited 60 s
per 30 s; one that is up only half the time shows 100 % uptime (reputation.uptime caps
at 1), which feeds its reputation, its tier (placement order) and what the platform
pays on it. The per-host heartbeat rate limit is per replica (in memory), so it does
not stop this.

Fix: lock the batch's host rows at the lookup (`SELECT ... FOR NO KEY UPDATE`, in host
id order, as the update already does), so a batch reads `last_heartbeat_at` and
`heartbeat_signed_at` as committed by any other process and nothing can change them
before it commits. That also makes the redo loop (WRITE_TRIES, RaceLostError) needless.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from substrateinterface import Keypair

from kumulus.backend.api.routes.agents import prepare_heartbeat
from kumulus.backend.clock import utcnow
from kumulus.backend.heartbeats import HeartbeatWriter, Outcome
from kumulus.backend.models import Host, HostUptime
from kumulus.backend.reputation import uptime_by_hour
from kumulus.core.signing import Domain, SignedEnvelope, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host


def _envelope(key: Keypair, host_id: str, at: float) -> SignedEnvelope:
    payload = {"kind": "health", "hostId": host_id, "agentVersion": "9"}
    return sign_envelope(key, payload, domain=Domain.HEARTBEAT, now=at)


def test_two_replicas_do_not_both_credit_the_same_gap(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    app: Any = backend.app
    db = app.state.db
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: one backend process, one writer")
    settings = app.state.settings
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    gap = 20.0  # under the 30 s TTL: all of it is uptime, once
    base = round(time.time(), 3)
    with db.session() as s:
        s.execute(
            update(Host)
            .where(Host.id == host_id)
            .values(
                last_heartbeat_at=utcnow() - timedelta(seconds=gap),
                heartbeat_signed_at=base - gap,
                uptime_hour=None,
                uptime_seconds=0.0,
            )
        )
        s.execute(HostUptime.__table__.delete().where(HostUptime.host_id == host_id))
        s.commit()

    one = HeartbeatWriter(db, ttl=settings.heartbeat_ttl)  # replica 1's writer
    two = HeartbeatWriter(db, ttl=settings.heartbeat_ttl)  # replica 2's writer
    # Replica 2's batch has read the host (its lookup) and is on its way to the writes
    # when replica 1's batch runs: the ordinary interleaving of two writers.
    looked_up, go_on = threading.Event(), threading.Event()
    store = two._store

    def paused_store(*args: Any, **kwargs: Any) -> bool:
        looked_up.set()
        go_on.wait(10)
        return store(*args, **kwargs)

    two._store = paused_store  # type: ignore[method-assign]
    try:
        second = two.submit(prepare_heartbeat(_envelope(host_key, host_id, base + 0.002), settings))
        assert looked_up.wait(10)
        first = one.submit(prepare_heartbeat(_envelope(host_key, host_id, base + 0.001), settings))
        # Replica 1 stores its heartbeat meanwhile (a fixed writer may instead wait
        # for the host's row, which replica 2 then holds: it goes on after replica 2).
        with contextlib.suppress(TimeoutError):
            first.result(timeout=2)
        go_on.set()
        outcomes = {first.result(timeout=20), second.result(timeout=20)}
    finally:
        go_on.set()
        one.close()
        two.close()
    assert Outcome.ACCEPTED in outcomes
    with db.session() as s:
        credited = sum(uptime_by_hour(s, host_id).values())
    # About `gap` (+ the few seconds the test waited) really elapsed since the host's
    # previous heartbeat; both replicas credited the whole gap: about 2 * gap.
    assert credited <= gap + 5, f"{credited:.1f} s of uptime credited for {gap:.0f} s"
