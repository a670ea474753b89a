"""Heartbeat replay protection: a heartbeat is stored only when it is signed later than
the newest stored for its host (hosts.heartbeat_signed_at), with no nonce row each. A
replay, another envelope signed at the same time, or an older one arriving late is a 401
`replayed`. Across backend processes: a batch that read the host before another process
stored a newer heartbeat of it finds that out under the row's lock and is written again,
so the older heartbeat is refused, never stored over the newer one."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend.api.routes.agents import prepare_heartbeat
from kumulus.backend.clock import utcnow
from kumulus.backend.heartbeats import HeartbeatWriter, Outcome
from kumulus.backend.models import Heartbeat, Host, SeenNonce
from kumulus.core.signing import Domain, SignedEnvelope, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host


def _envelope(key: Keypair, host_id: str, at: float) -> SignedEnvelope:
    payload = {"kind": "health", "hostId": host_id, "agentVersion": "9"}
    return sign_envelope(key, payload, domain=Domain.HEARTBEAT, now=at)


def _stored(app: Any, host_id: str) -> tuple[int, float | None]:
    with app.state.db.session() as db:
        count = db.scalar(select(func.count()).where(Heartbeat.host_id == host_id))
        return int(count or 0), db.scalar(
            select(Host.heartbeat_signed_at).where(Host.id == host_id)
        )


def _nonce_rows(app: Any) -> int:
    with app.state.db.session() as db:
        return int(db.scalar(select(func.count()).select_from(SeenNonce)) or 0)


def test_only_later_signed_heartbeats_are_stored(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    now = round(time.time(), 3)
    nonces = _nonce_rows(backend.app)

    def post(env: SignedEnvelope) -> tuple[int, str]:
        resp = backend.post("/v1/hosts/heartbeat", json=env.model_dump())
        return resp.status_code, resp.json().get("code", "")

    first = _envelope(host_key, host_id, now)
    assert post(first) == (202, "")
    assert post(first) == (401, "replayed")  # the same envelope again
    assert post(_envelope(host_key, host_id, now)) == (401, "replayed")  # same time
    assert post(_envelope(host_key, host_id, now - 5)) == (401, "replayed")  # older
    assert post(_envelope(host_key, host_id, now + 1)) == (202, "")
    assert _stored(backend.app, host_id) == (2, now + 1)
    assert _nonce_rows(backend.app) == nonces  # heartbeats write no nonce rows


@pytest.mark.parametrize(("ours", "outcome"), [(3.0, Outcome.REPLAYED), (7.0, Outcome.ACCEPTED)])
def test_a_batch_that_read_the_host_before_another_process_stored_is_written_again(
    backend: TestClient,
    provider: Actor,
    wallet: Keypair,
    host_key: Keypair,
    ours: float,
    outcome: Outcome,
) -> None:
    app: Any = backend.app
    db = app.state.db
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no other process can store meanwhile")
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    base = round(time.time(), 3)
    theirs = base + 5.0
    writer = HeartbeatWriter(db, ttl=app.state.settings.heartbeat_ttl)
    # Another process's writer, mid-transaction: it stored a heartbeat signed at `theirs`
    # and holds the host's row until it commits.
    other = Session(bind=db.engine)
    other.execute(update(Host).where(Host.id == host_id).values(heartbeat_signed_at=theirs))
    try:
        beat = prepare_heartbeat(_envelope(host_key, host_id, base + ours), app.state.settings)
        answer = writer.submit(beat)
        time.sleep(0.5)  # our writer read the host (no heartbeat yet) and waits on the row
        assert not answer.done()
        other.commit()
        assert answer.result(timeout=20) is outcome
    finally:
        other.close()
        writer.close()
    if outcome is Outcome.REPLAYED:
        assert _stored(app, host_id) == (0, theirs)  # nothing of ours, theirs kept
    else:
        assert _stored(app, host_id) == (1, base + ours)


def test_a_replay_in_the_same_batch_is_refused(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    app: Any = backend.app
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    env = _envelope(host_key, host_id, round(time.time(), 3))
    settings = app.state.settings
    writer = HeartbeatWriter(app.state.db, ttl=settings.heartbeat_ttl)
    try:
        with Session(bind=app.state.db.engine) as s:
            beats = [prepare_heartbeat(env, settings) for _ in range(2)]
            outcomes = writer._write_in(s, beats, utcnow())
            s.commit()
    finally:
        writer.close()
    assert outcomes == [Outcome.ACCEPTED, Outcome.REPLAYED]
    assert _stored(app, host_id) == (1, env.timestamp)
